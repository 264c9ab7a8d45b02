"""dreamlake: structured experiment logging cheap enough for the hottest training loop."""

from ._default import log
from ._levels import LEVELS
from ._params import Parameters, read_params
from ._read._records import Records, iter_logs, read_logs
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
]
__version__ = "0.1.0"
