"""LIBERO tasks as Gymnasium environments (see :class:`para_bench.envs.libero_env.LiberoEnv`).

Importing this package installs a filter on robosuite's logger (before robosuite is ever
imported) that keeps its "No private macro file found" notice out of the user's terminal:
it is about robosuite's own setup, not the user's run. Nothing else is imported here.
"""

import logging as _logging


class _NoMacroNotice(_logging.Filter):
    def filter(self, record: _logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("private macro file" in text or "setup_macros.py" in text)


_logger = _logging.getLogger("robosuite_logs")
if not any(isinstance(f, _NoMacroNotice) for f in _logger.filters):
    _logger.addFilter(_NoMacroNotice())
