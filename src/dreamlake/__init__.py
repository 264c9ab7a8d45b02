"""dreamlake: structured experiment logging cheap enough for the hottest training loop."""

try:
    from . import _core  # noqa: F401 - the native data plane: everything below needs it
except ImportError as exc:
    raise ImportError(
        "dreamlake's native core (dreamlake._core) is missing or built for another Python: install "
        "a wheel (pip install dreamlake), or build it from source with a C compiler and this "
        "Python's headers (pip install -e . in a checkout)"
    ) from exc

from ._default import log
from ._levels import LEVELS
from ._params import Parameters, read_params
from ._read._records import Records, iter_logs, read_logs
from ._read._runs import runs
from ._read._tracks import read_track
from ._session import Session
from ._tracks import Track

__all__ = [
    "LEVELS",
    "Parameters",
    "Records",
    "Session",
    "Track",
    "iter_logs",
    "log",
    "read_logs",
    "read_params",
    "read_track",
    "runs",
]
__version__ = "0.1.0"
