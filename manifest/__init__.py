"""The Slack and Teams app manifests, shipped in the wheel as this package's data.

A package only so that an installed `unsilo` finds them (`importlib.resources.files("manifest")`);
the files stay in the top-level `manifest/` folder of the repository.
"""
