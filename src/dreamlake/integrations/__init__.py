"""Training frameworks reporting into a dreamlake Session; each module imports its framework.

`dreamlake.integrations.transformers.DreamlakeCallback` for Hugging Face's `Trainer`,
`dreamlake.integrations.lightning.DreamlakeLogger` for Lightning's `Trainer`. Neither
framework is a dependency of dreamlake: importing one of these modules without its
framework raises ImportError saying what to install. What both share is in `_common`.
"""
