"""Shared building blocks of the learned policies (PARA, AR, voxel, ACT).

Everything here imports torch; nothing in :mod:`para_bench` imports this package unless a
model agent, ``collect`` or ``train`` is used.
"""
