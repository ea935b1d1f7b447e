"""LIBERO tasks as Gymnasium environments (see :class:`para_bench.envs.libero_env.LiberoEnv`)."""
