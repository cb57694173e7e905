import sys
from pathlib import Path

# The factory module sits next to this conftest; importlib import mode needs the path.
sys.path.insert(0, str(Path(__file__).parent))
