"""One episode, start to record: the settings of a run, the environment pool, the episode
loop through the one control path, stages, per-episode metrics, oracle references, and the
worker that turns a planned episode into its record.

Data flow: :mod:`~para_bench.runner` (plan -> store) hands episodes to an executor
(:mod:`para_bench.executors`), whose workers each hold an
:class:`~para_bench.evaluation.worker.EpisodeWorker`; it runs
:func:`~para_bench.evaluation.episode.run_episode` and returns an
:class:`~para_bench.types.EpisodeRecord`.
"""
