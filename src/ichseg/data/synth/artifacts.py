"""Beam hardening: what thick bone does to the brain's HU next to it.

Bone hardens the beam, and the reconstruction's correction leaves the brain next to thick bone
a few HU too dense: a band along the vault's inner table and a stronger one over the floor of the
middle and posterior fossae, where it adds to partial volume to look like a thin subdural or
subarachnoid bleed. Between the petrous ridges, rays through both pyramids leave a dark band
across the pons (the interpetrous "Hounsfield bar"). All three are smooth functions of the
distance to the bone, not noise.
"""

from __future__ import annotations

import numpy as np

from ichseg.data.synth.anatomy import PETROUS_RIDGES, sigmoid
from ichseg.data.synth.slab import Slab


def add_beam_hardening(slab: Slab) -> None:
    """Add the rise near bone and the interpetrous band to the HU of the cranial cavity."""
    beam = slab.head.lookalikes.beam
    cavity = slab.cavity
    posterior = sigmoid((slab.vn[cavity] - 8.0) / 6.0)  # the posterior fossa's bone is thickest
    rise = (np.float32(beam.vault_hu) * np.exp(-slab.radial_depth[cavity] / np.float32(beam.vault_mm))
            + np.float32(beam.base_hu) * (0.5 + 0.5 * posterior)
            * np.exp(-slab.above_floor[cavity] / np.float32(beam.base_mm)))
    slab.hu[cavity] += rise
    _interpetrous_band(slab)


def _interpetrous_band(slab: Slab) -> None:
    """A dark band from one petrous ridge to the other, a few millimetres thick."""
    head, beam = slab.head, slab.head.lookalikes.beam
    ridge = head.to_local(PETROUS_RIDGES[0].center)
    top = ridge[2] + PETROUS_RIDGES[0].axes[2] * head.scale[2]
    half = np.array([1.6 * abs(ridge[0]), 5 * beam.bar_mm, 10 * beam.bar_mm])
    center = np.array([0.0, ridge[1], top])
    box = slab.box(head.to_world(center), np.abs(head.rotation.T) @ half)
    if box is None:
        return
    dv = (slab.v[box] - np.float32(center[1])) / np.float32(beam.bar_mm)
    dw = (slab.w[box] - np.float32(center[2])) / np.float32(2 * beam.bar_mm)
    across = 1.0 / (1.0 + (slab.u[box] / np.float32(abs(ridge[0]))) ** 8)
    band = np.float32(beam.bar_hu) * across * np.exp(-0.5 * (dv * dv + dw * dw))
    slab.hu[box] -= np.where(slab.cavity[box], band, np.float32(0))
