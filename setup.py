"""Maps the top-level folders onto one import root: runtime/ is jubako.runtime, etc."""

from setuptools import find_packages, setup

ROOTS = {
    "jubako": "jubako",
    "jubako.runtime": "runtime",
    "jubako.registry": "registry",
    "jubako.operator": "operator",
    "jubako.web": "web",  # dashboard templates and static files (registry/dashboard)
}

packages, package_dir = [], {}
for package, folder in ROOTS.items():
    package_dir[package] = folder
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir=package_dir,
    # Non-Python files shipped inside packages: migrations, templates, static files, CRDs.
    package_data={
        "": ["*.yaml", "*.ini", "*.mako", "*.html", "*.css", "*.js", "*.svg", "*.json", "*.png"],
        # Alembic's versions/ is a folder of scripts, not a package: name it explicitly.
        "jubako.registry.migrations": ["versions/*.py"],
        # The dashboard's templates/ and static/ are folders of files, not packages.
        "jubako.web": ["templates/*.html", "static/*"],
    },
    include_package_data=True,
)
