"""Builds the native core, `dreamlake._core` (everything else is in pyproject.toml).

DREAMLAKE_SANITIZE=1 builds it with AddressSanitizer and UndefinedBehaviorSanitizer, for a
sanitizer run (the interpreter then needs the ASan runtime in LD_PRELOAD).
"""

import os

from setuptools import Extension, setup

flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]
link: list[str] = []
if os.environ.get("DREAMLAKE_SANITIZE"):
    sanitizers = "-fsanitize=address,undefined"
    flags += ["-O1", "-g", "-fno-omit-frame-pointer", sanitizers, "-fno-sanitize-recover=all"]
    link += [sanitizers]
else:
    flags += ["-O2"]

native = "src/dreamlake/"
core = Extension(
    "dreamlake._core",
    [native + "_core.c", native + "_shortest.c"],
    depends=[native + "_shortest.h", native + "_pow5.h"],  # in the sdist, and rebuilt on change
    extra_compile_args=flags,
    extra_link_args=link,
)
setup(ext_modules=[core])
