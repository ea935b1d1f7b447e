"""The oracle's grasp planning on hand-made scenes (no simulator)."""

from __future__ import annotations

import numpy as np

from para_bench.agents.oracle import HAND_HALF_DEPTH, OracleAgent

BOX = ((0.014, -0.124, 0.0), (0.095, -0.082, 0.018))  # cream cheese: long along x
BASKET = ((0.2, 0.2, 0.0), (0.3, 0.3, 0.08))


def _info(extents):
    poses = {n: [*((np.add(a, b)) / 2), 0.0, 0.0, 0.0, 1.0] for n, (a, b) in extents.items()}
    return {"object_extents": extents, "object_poses": poses}


def _agent(rim_side_margin: float = 0.0):
    agent = OracleAgent(rim_side_margin=rim_side_margin)
    agent.reset({"benchmark": "libero_object", "task_id": 1}, seed=0)
    return agent


def test_a_narrow_object_alone_is_grasped_at_its_centre_across_its_narrow_side():
    plan = _agent()._plan_grasp("box", "basket", _info({"box": BOX, "basket": BASKET}))
    assert np.allclose(plan["point"][:2], [0.0545, -0.103]) and plan["yaw"] == 0.0
    assert not plan["rim"]


def test_the_grasp_moves_along_the_box_away_from_a_taller_neighbour_under_the_hand():
    # a bottle beside the box, under the hand's span (fingers close along y), taller than
    # the hand's underside when the fingers reach the grasp point
    bottle = ((0.069, -0.234, 0.0), (0.132, -0.172, 0.076))
    agent = _agent()
    info = _info({"box": BOX, "basket": BASKET, "bottle": bottle})
    plan = agent._plan_grasp("box", "basket", info)
    shift = plan["point"][0] - 0.0545
    assert shift < -0.01  # away from the bottle (+x), still on the box
    assert plan["point"][0] > BOX[0][0]
    gap = bottle[0][0] - (plan["point"][0] + HAND_HALF_DEPTH)
    assert gap > 0  # the hand's footprint no longer overlaps the bottle
    # a short neighbour in the same place does not move it
    low = ((0.069, -0.234, 0.0), (0.132, -0.172, 0.03))
    centre = _agent()._plan_grasp("box", "basket", _info({"box": BOX, "basket": BASKET,
                                                           "bottle": low}))
    assert np.isclose(centre["point"][0], 0.0545)
    # a shift whose descent was blocked is not planned again
    agent.failed_sides.add(plan["side"])
    again = agent._plan_grasp("box", "basket", info)
    assert again["side"] != plan["side"]


def test_a_turned_object_is_not_shifted_off_its_body():
    """The box of an object turned 45 degrees says nothing of where its body runs: a shift
    along the box's long side could put the fingers beside it."""
    stick = ((0.0, -0.03, 0.0), (0.08, 0.03, 0.015))
    bottle = ((0.05, -0.16, 0.0), (0.1, -0.1, 0.08))
    info = _info({"stick": stick, "basket": BASKET, "bottle": bottle})
    s = np.sin(np.pi / 8)
    info["object_poses"]["stick"][3:] = [0.0, 0.0, s, np.cos(np.pi / 8)]  # yaw 45 degrees
    plan = _agent()._plan_grasp("stick", "basket", info)
    assert plan["side"] == ("centre", 0.0)
    assert np.allclose(plan["point"][:2], [0.04, 0.0])


def test_a_rim_side_within_the_margin_of_the_best_loses_to_the_earlier_side():
    """A bowl with a neighbour 1 cm nearer its +y wall than its -y wall: the clearest side
    (-y) wins without a margin; with a 2 cm margin the earlier side in RIM_SIDES (+y) does,
    and a neighbour that leaves +y no room still loses it."""
    bowl = ((-0.05, -0.05, 0.0), (0.05, 0.05, 0.05))

    def side(gap_plus_y: float, gap_minus_y: float, margin: float) -> tuple:
        near = ((-0.2, 0.05 + 0.04 + gap_plus_y, 0.0), (0.2, 0.3, 0.1))  # beyond +y
        far = ((-0.2, -0.3, 0.0), (0.2, -0.05 - 0.04 - gap_minus_y, 0.1))  # beyond -y
        left = ((-0.2, -0.2, 0.0), (-0.05 - 0.04 - 0.005, 0.2, 0.1))  # beyond -x
        right = ((0.05 + 0.04 + 0.005, -0.2, 0.0), (0.3, 0.2, 0.1))  # beyond +x
        plate = ((-0.36, -0.05, 0.0), (-0.26, 0.05, 0.01))  # the target, within reach
        info = _info({"bowl": bowl, "near": near, "far": far, "left": left, "right": right,
                      "plate": plate})
        return _agent(margin)._plan_grasp("bowl", "plate", info)["side"]

    assert side(0.02, 0.03, 0.0) == (0, -1)
    assert side(0.02, 0.03, 0.02) == (0, 1)
    assert side(0.0, 0.03, 0.02) == (0, -1)


def test_in_process_agents_leave_the_remote_policy_field_empty():
    """``Record.policy`` says where a remote policy ran, and tables label every record that
    has one ``remote:...``: an in-process agent that set it (the oracle once kept its
    rim-side margin there) had its runs shown as ``remote:None@``."""
    from para_bench.registry import make_agent

    for name in ("oracle", "noop", "random"):
        assert getattr(make_agent(name), "policy_record", None) is None, name
