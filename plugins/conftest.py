"""pytest settings for the ``plugins/`` folder of the workspace run.

``_template/`` is a separate distribution a third party copies; it is not a workspace member and is
not installed in the workspace environment, so its tests cannot import it here. They run in an
environment of their own, with the template built and installed as a wheel, in
``tests/test_plugin_template.py``.
"""

collect_ignore = ["_template"]
