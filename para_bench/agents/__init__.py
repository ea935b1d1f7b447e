"""Agents: the Agent interface, the scripted oracle, baselines (and model agents)."""
