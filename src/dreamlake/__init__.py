"""dreamlake: structured experiment logging cheap enough for the hottest training loop."""

from ._levels import LEVELS
from ._session import Session

__all__ = ["LEVELS", "Session"]
__version__ = "0.1.0"
