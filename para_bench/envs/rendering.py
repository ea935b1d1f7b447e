"""The render gate of :class:`~para_bench.envs.libero_env.LiberoEnv`: frames only when read.

robosuite updates every observable at every physics substep, and its camera observables
render whenever they are updated. :class:`RenderGate` wraps those camera sensors so that
they render only while the gate is open (the env opens it for the control step whose
observation is returned) and return a stub image otherwise, and applies the render
quality to the offscreen context:

- ``fast`` (default): no MSAA, no mirrored reflection pass (~3x cheaper per frame on CPU
  rasterisers, mean pixel change ~3/255), the offscreen buffer sized to the image.
- ``libero``: LIBERO's own settings, for policies trained on LIBERO's images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["RENDER_QUALITIES", "WRIST_CAMERA", "RenderGate", "quiet_render_teardown"]

RENDER_QUALITIES = ("fast", "libero")
WRIST_CAMERA = "robot0_eye_in_hand"


class RenderGate:
    """robosuite's camera sensors of one env, rendering only while :attr:`open` is true.

    Args:
        rs: the robosuite environment (LIBERO's ``OffScreenRenderEnv.env``).
        cameras: camera names whose ``<camera>_image`` observables are gated.
        image_size: side of the square images.
        quality: one of :data:`RENDER_QUALITIES`.
    """

    def __init__(self, rs: Any, cameras: list[str], image_size: int, quality: str) -> None:
        if quality not in RENDER_QUALITIES:
            raise ValueError(f"render_quality must be one of {RENDER_QUALITIES}, got {quality!r}")
        self.rs = rs
        self.open = False
        stub = np.zeros((image_size, image_size, 3), np.uint8)
        for camera in cameras:
            observable = rs._observables[f"{camera}_image"]
            real = observable._sensor

            def gated(obs_cache: dict, real=real) -> np.ndarray:
                if not self.open:
                    return stub
                # robosuite renders into whichever GL context is current; with two
                # environments in one process (an agent's and the oracle reference's) that
                # is often the other one's, giving subtly wrong, non-deterministic pixels
                self.make_current()
                return real(obs_cache)

            gated.__modality__ = getattr(real, "__modality__", "image")
            observable._sensor = gated
        if quality == "fast":
            self._configure_fast(image_size)

    def make_current(self) -> None:
        """Makes this env's offscreen GL context the current one."""
        self.rs.sim._render_context_offscreen.gl_ctx.make_current()

    def _configure_fast(self, image_size: int) -> None:
        """No MSAA, no reflection, a buffer of the image's size (the context is created
        once per env, so this holds across soft resets)."""
        import mujoco

        sim = self.rs.sim
        ctx = sim._render_context_offscreen
        sim.model.vis.quality.offsamples = 0
        sim.model.vis.global_.offwidth = image_size
        sim.model.vis.global_.offheight = image_size
        ctx.gl_ctx.make_current()
        ctx.con.free()
        ctx._set_mujoco_context_and_buffers()
        ctx.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    def render_now(self) -> dict[str, Any]:
        """robosuite's observations with every gated camera rendered now."""
        self.open = True
        try:
            return self.rs._get_observations(force_update=True)
        finally:
            self.open = False

    def before_close(self) -> None:
        """MuJoCo frees a render context's GL objects by id in the *current* GL context:
        make this env's current first, or another environment's textures are freed."""
        if getattr(self.rs.sim, "_render_context_offscreen", None) is not None:
            self.make_current()


def quiet_render_teardown() -> None:
    """robosuite frees EGL contexts in ``__del__``, which raises noisily once EGL is gone at
    interpreter exit; make those finalisers quiet (the process is ending anyway)."""
    from robosuite.renderers.context import egl_context
    from robosuite.utils import binding_utils

    for cls in (binding_utils.MjRenderContext, egl_context.EGLGLContext):
        original = cls.__del__
        if getattr(original, "_para_bench_quiet", False):
            continue

        def quiet(self, _original=original):
            try:
                _original(self)
            except Exception:  # noqa: BLE001 - teardown only
                pass

        quiet._para_bench_quiet = True
        cls.__del__ = quiet
