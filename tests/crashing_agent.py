"""An agent whose process dies on some episodes (imported by worker processes in tests)."""

from __future__ import annotations

import os
import time

import numpy as np


class CrashingAgent:
    """Kills its own process on even seeds (like a segfault), hangs on seed 3, else no-op."""

    def reset(self, task, seed):
        self.seed = seed

    def act(self, obs, info):
        if self.seed % 2 == 0:
            os._exit(139)
        if self.seed == 3:
            time.sleep(600)
        return np.zeros((5, 7))

    def close(self):
        pass
