"""Builds the native core, `dreamlake._core` (everything else is in pyproject.toml).

DREAMLAKE_SANITIZE=1 builds it with AddressSanitizer and UndefinedBehaviorSanitizer, for
`.ci/sanitize` (run the interpreter with the ASan runtime in LD_PRELOAD).
"""

import os

from setuptools import Extension, setup

flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]
link = []
if os.environ.get("DREAMLAKE_SANITIZE"):
    flags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    link += ["-fsanitize=address,undefined"]
else:
    flags += ["-O2"]

setup(ext_modules=[Extension("dreamlake._core", ["src/dreamlake/_core.c"], extra_compile_args=flags, extra_link_args=link)])
