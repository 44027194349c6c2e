"""Packages are found, not listed: every folder with an __init__.py under hf_laps/, jobs/ and cli/.

jobs/ and cli/ are top-level folders of the repository (the project's layout keeps them apart from
the library, which never imports them); they install as hf_laps.jobs and hf_laps.cli. Everything
else about the package is in setup.cfg.
"""
from setuptools import find_packages, setup

# installed package name -> folder in the repository
FOLDERS = {"hf_laps": "hf_laps", "hf_laps.jobs": "jobs", "hf_laps.cli": "cli"}


def found(package: str, folder: str) -> list[str]:
    return [package] + [f"{package}.{sub}" for sub in find_packages(folder)]


setup(packages=[name for package, folder in FOLDERS.items() for name in found(package, folder)],
      package_dir=FOLDERS)
