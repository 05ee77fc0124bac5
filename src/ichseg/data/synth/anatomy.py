"""The head model: local coordinates, nominal landmarks and every parameter of one case's head.

Local head coordinates (u, v, w) in mm point along the patient's left, posterior and superior
(the LPS axes of the image before the head's small rotation), with the origin at the middle of
the head near the foramen of Monro. Brain landmarks are given for a nominal head whose inner
table has semi-axes NOMINAL_INNER and are scaled to each case's head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ichseg.data.synth.defects import SkullDefect
from ichseg.data.synth.lookalikes import LookAlikes

NOMINAL_INNER = (62.5, 80.5, 76.5)
SULCAL_RADIUS = 70.0  # radius at which the sulcal pattern's wavelength is measured


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def cranial_floor_height(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Height (nominal w) of the floor of the anterior, middle and posterior cranial fossae.

    The anterior fossa rises forwards over the domed orbital roofs, either side of a lower
    olfactory groove.
    """
    side = np.abs(u)
    orbital_roofs = 8.0 * np.exp(-(((side - 24.0) / 12.0) ** 2))
    anterior = -31.0 + orbital_roofs - 0.2 * np.minimum(v + 30.0, 0.0)
    middle_bowl = -49.0 + 0.008 * ((side - 36.0) ** 2 + (v + 12.0) ** 2)
    posterior_bowl = -70.0 + 0.005 * (u * u + (v - 35.0) ** 2)
    posterior = sigmoid((v - 8.0) / 6.0)
    middle = sigmoid((side - 19.0) / 4.0) * sigmoid((v + 28.0) / 4.0) * sigmoid((6.0 - v) / 4.0)
    return (anterior + (posterior_bowl - anterior) * posterior
            + (middle_bowl - anterior) * middle * (1.0 - posterior))


def tentorium_height(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Height (nominal w) of the tentorium, sloping down towards the occiput and the sides."""
    return -16.0 - 0.32 * np.maximum(v - 4.0, 0.0) - 0.004 * u * u


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid in nominal head coordinates, turned by ``yaw`` degrees about the w axis."""

    center: tuple[float, float, float]
    axes: tuple[float, float, float]
    yaw: float = 0.0

    def mirrored(self) -> Ellipsoid:
        u, v, w = self.center
        return Ellipsoid((-u, v, w), self.axes, -self.yaw)

    def frame(self) -> np.ndarray:
        """Columns: the ellipsoid's (u, v, w) axis directions in head coordinates."""
        t = math.radians(self.yaw)
        return np.array([[math.cos(t), math.sin(t), 0.0],
                         [-math.sin(t), math.cos(t), 0.0],
                         [0.0, 0.0, 1.0]])

    def scaled(self, factor: float) -> Ellipsoid:
        a, b, c = self.axes
        return Ellipsoid(self.center, (a * factor, b * factor, c * factor), self.yaw)


def _pair(shape: Ellipsoid) -> tuple[Ellipsoid, Ellipsoid]:
    return shape, shape.mirrored()


# Nominal landmarks (mm). Painted in this order; later shapes cover earlier ones.
DEEP_GREY = (*_pair(Ellipsoid((21.0, -3.0, 1.0), (5.5, 14.0, 9.0), -6.0)),  # lentiform nuclei
             *_pair(Ellipsoid((9.0, 12.0, 3.0), (7.5, 11.0, 8.0), 10.0)))   # thalami
LATERAL_VENTRICLES = (*_pair(Ellipsoid((7.5, -6.0, 12.0), (4.5, 26.0, 7.5), 12.0)),   # bodies
                      *_pair(Ellipsoid((17.0, 26.0, 9.0), (6.5, 15.0, 8.0), -12.0)),  # atria
                      *_pair(Ellipsoid((27.0, 2.0, -18.0), (3.0, 13.0, 3.5), 10.0)))  # temporal
CAUDATE_HEADS = _pair(Ellipsoid((12.5, -14.0, 10.0), (4.5, 9.0, 8.0)))
MIDLINE_VENTRICLES = (Ellipsoid((0.0, 6.0, 0.0), (2.2, 12.0, 9.0)),     # third ventricle
                      Ellipsoid((0.0, 36.0, -44.0), (5.5, 3.5, 6.0)))   # fourth ventricle
CISTERNS = (Ellipsoid((0.0, 12.0, -20.0), (13.5, 13.0, 7.0)),    # perimesencephalic
            Ellipsoid((0.0, 26.0, -14.0), (7.0, 5.0, 5.0)),      # quadrigeminal
            Ellipsoid((0.0, -8.0, -24.0), (10.0, 7.0, 4.0)))     # suprasellar
BRAINSTEM = (Ellipsoid((0.0, 12.0, -20.0), (10.5, 10.0, 8.0)),   # midbrain
             Ellipsoid((0.0, 22.0, -42.0), (12.0, 11.0, 14.0)))  # pons
PETROUS_RIDGES = _pair(Ellipsoid((32.0, 14.0, -49.0), (5.0, 24.0, 6.0), 55.0))
ORBITS = _pair(Ellipsoid((28.0, -56.0, -50.0), (15.0, 20.0, 14.0)))
GLOBES = _pair(Ellipsoid((30.0, -64.0, -50.0), (11.0, 11.0, 11.0)))
LENSES = _pair(Ellipsoid((30.0, -73.0, -50.0), (4.5, 1.8, 4.5)))
OPTIC_NERVES = _pair(Ellipsoid((22.0, -41.0, -51.0), (2.0, 14.0, 2.2), -30.0))
RECTUS_MUSCLES = (*_pair(Ellipsoid((17.0, -46.0, -50.0), (1.8, 15.0, 3.5), -9.0)),   # medial
                  *_pair(Ellipsoid((31.0, -46.0, -50.0), (1.8, 16.0, 3.5), -40.0)),  # lateral
                  *_pair(Ellipsoid((25.0, -46.0, -41.0), (4.0, 15.0, 1.8), -25.0)),  # superior
                  *_pair(Ellipsoid((25.0, -46.0, -59.0), (4.0, 15.0, 1.8), -25.0)))  # inferior
MASTOIDS = _pair(Ellipsoid((50.0, 24.0, -62.0), (9.0, 12.0, 12.0)))
PHARYNX = Ellipsoid((0.0, -2.0, -98.0), (11.0, 7.0, 16.0))
SINUSES = (Ellipsoid((0.0, -46.0, -52.0), (9.0, 24.0, 14.0)),     # ethmoid
           *_pair(Ellipsoid((24.0, -50.0, -80.0), (12.0, 15.0, 14.0))),  # maxillary
           Ellipsoid((0.0, -16.0, -60.0), (12.0, 10.0, 9.0)))     # sphenoid
FORAMEN_MAGNUM = Ellipsoid((0.0, 30.0, -95.0), (13.0, 14.0, 28.0))
MEDULLA = Ellipsoid((0.0, 27.0, -85.0), (8.0, 8.0, 32.0))
CHOROID_CALCIFICATIONS = _pair(Ellipsoid((18.0, 27.0, 10.0), (2.2, 2.6, 2.2)))
CHOROID_PLEXUS = _pair(Ellipsoid((18.0, 27.0, 10.0), (3.5, 6.5, 3.5), -12.0))
PINEAL_CALCIFICATION = Ellipsoid((0.0, 22.0, 4.0), (2.0, 2.0, 2.0))
PUTAMEN = (21.0, -3.0, 1.0)
THALAMUS = (9.0, 12.0, 3.0)
NECK_LEVEL = -85.0  # nominal height below which the skull gives way to the soft tissue of the neck
GALEN = (0.0, 28.0, -18.0)          # vein of Galen, where the straight sinus begins
TORCULA_DIRECTION = (0.0, 0.9, -0.44)  # from the origin to the internal occipital protuberance
SIGMOID_PATH = ((47.0, 36.0, -37.0), (45.0, 25.0, -52.0), (30.0, 19.0, -66.0))  # to the jugular foramen
FRONTAL_SINUS_DIRECTION = (0.0, -0.995, 0.1)


@dataclass(frozen=True)
class Head:
    """Every anatomical parameter of one case, drawn once from its random generator."""

    center: np.ndarray        # world (x, y, z) of the local origin, mm
    rotation: np.ndarray      # local = rotation @ (world - center)
    skin: tuple[float, float, float, float]  # semi-axes: lateral, AP, upwards, downwards
    ripple: tuple[float, float, float]        # low-order departures from an ellipsoid
    scalp_mm: float
    temporalis_mm: float
    skull_mm: float
    base_mm: float
    subarachnoid_mm: float
    cortex_mm: float
    sulcus_half_width: float
    sulcus_depth: float
    waves: np.ndarray         # (K, 3) wave vectors of the sulcal pattern on the unit sphere
    phases: np.ndarray        # (K,)
    warp: np.ndarray          # (4, 3) wave vectors bending the sulci and varying their depth, 1/mm
    warp_phases: np.ndarray   # (4,)
    scale: tuple[float, float, float]  # case inner table / nominal inner table
    ventricle_scale: float
    calcified_choroid: bool
    calcified_pineal: bool
    hu: dict[str, float]
    lookalikes: LookAlikes
    defect: SkullDefect | None = None

    @staticmethod
    def draw(rng: np.random.Generator, lookalike_rng: np.random.Generator) -> Head:
        """The head's anatomy from ``rng`` and its look-alikes from ``lookalike_rng``."""
        yaw, roll, pitch = (math.radians(rng.uniform(-6, 6)), math.radians(rng.uniform(-4, 4)),
                            math.radians(rng.uniform(-12, 8)))
        skin = (rng.uniform(70, 78), rng.uniform(86, 95), rng.uniform(84, 92), rng.uniform(110, 125))
        scalp, skull = rng.uniform(4.0, 6.5), rng.uniform(5.5, 7.5)
        inner = (skin[0] - scalp - skull, skin[1] - scalp - skull, skin[2] - scalp - skull)
        n_waves = 10
        wavelength = rng.uniform(24.0, 30.0) / SULCAL_RADIUS
        return Head(
            center=np.array([rng.uniform(-5, 5), rng.uniform(-5, 5), 0.0]),
            rotation=rotation(yaw, roll, pitch),
            skin=skin,
            ripple=(rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(0.0, 0.04)),
            scalp_mm=scalp,
            temporalis_mm=rng.uniform(6.0, 12.0),
            skull_mm=skull,
            base_mm=rng.uniform(4.5, 7.0),
            subarachnoid_mm=rng.uniform(0.8, 2.2),
            cortex_mm=rng.uniform(3.0, 3.8),
            sulcus_half_width=rng.uniform(0.7, 1.4),
            sulcus_depth=rng.uniform(8.0, 13.0),
            waves=_random_directions(rng, n_waves) * (2 * math.pi / wavelength),
            phases=rng.uniform(0, 2 * math.pi, n_waves),
            warp=_random_directions(rng, 4) * (2 * math.pi / rng.uniform(50.0, 70.0)),
            warp_phases=rng.uniform(0, 2 * math.pi, 4),
            scale=(inner[0] / NOMINAL_INNER[0], inner[1] / NOMINAL_INNER[1], inner[2] / NOMINAL_INNER[2]),
            ventricle_scale=rng.uniform(0.85, 1.35),
            calcified_choroid=bool(rng.random() < 0.6),
            calcified_pineal=bool(rng.random() < 0.5),
            hu={
                "skin": rng.uniform(25, 40), "fat": rng.uniform(-95, -75),
                "muscle": rng.uniform(42, 58), "vitreous": rng.uniform(5, 15),
                "csf": rng.uniform(3, 12), "grey": rng.uniform(39, 44),
                "white": rng.uniform(23, 28), "edema": rng.uniform(12, 19),
                "calcification": rng.uniform(350, 700), "table": rng.uniform(1500, 1850),
                "diploe": rng.uniform(500, 900), "base": rng.uniform(900, 1300),
                "noise": rng.uniform(3.0, 6.0),
            },
            lookalikes=LookAlikes.draw(lookalike_rng),
        )

    def contour_radius(self, nu: np.ndarray, nv: np.ndarray, nw: np.ndarray) -> np.ndarray:
        """Distance from the origin to the skin along the unit directions (nu, nv, nw), leaving
        out the bulge of the temporalis muscles (see :meth:`temporalis_thickness`)."""
        a, b, up, down = self.skin
        inv_c2 = np.where(nw > 0, np.float32(1 / up**2), np.float32(1 / down**2))
        radius = 1.0 / np.sqrt(nu * nu / a**2 + nv * nv / b**2 + nw * nw * inv_c2)
        r1, r2, r3 = self.ripple
        anterior = np.maximum(-nv, 0.0)
        return radius * (1.0 + r1 * nu * nv + r2 * nv * nw - r3 * anterior * anterior * anterior)

    def temporalis_thickness(self, nu: np.ndarray, nw: np.ndarray) -> np.ndarray:
        """The temporalis muscle between the scalp and the skull on the side of the head,
        thinning out at the temporal line; it pushes the skin out, not the skull in."""
        thickness = np.zeros(np.shape(nu), np.float32)
        side = (np.abs(nu) > 0.3) & (nw < 0.6)  # elsewhere thinner than 0.1 mm
        nu2 = nu[side] * nu[side]
        thickness[side] = (np.float32(self.temporalis_mm) * nu2 * nu2
                           * sigmoid((0.35 - nw[side]) / np.float32(0.06)))
        return thickness

    def skull_thickness(self, nu: np.ndarray, nv: np.ndarray, nw: np.ndarray) -> np.ndarray:
        """Vault thickness: thicker frontally and occipitally, thinner over the temporal squama,
        and thicker still where the frontal sinus splits the frontal bone."""
        vault = self.skull_mm * (1.0 + 0.3 * nv * nv - 0.35 * nu * nu)
        return vault + self.lookalikes.frontal_sinus_mm * self.frontal_sinus_extent(nu, nv, nw)

    def frontal_sinus_extent(self, nu: np.ndarray, nv: np.ndarray, nw: np.ndarray) -> np.ndarray:
        """1 at the middle of the frontal sinus, falling to 0 a few centimetres around it."""
        extent = np.zeros(np.shape(nu), np.float32)
        front = nv < -0.6  # elsewhere below 1e-5
        du, dv, dw = (c[front] - np.float32(f) for c, f in zip((nu, nv, nw), FRONTAL_SINUS_DIRECTION, strict=True))
        extent[front] = np.exp(-(du * du / np.float32(0.03) + (dv * dv + dw * dw) / np.float32(0.012)))
        return extent

    def inner_radius(self, direction: np.ndarray) -> float:
        """Distance from the origin to the inner table along one unit direction."""
        nu, nv, nw = (np.array([c], np.float32) for c in direction)
        return self.outer_radius(direction) - float(self.skull_thickness(nu, nv, nw)[0])

    def outer_radius(self, direction: np.ndarray) -> float:
        """Distance from the origin to the outer table along one unit direction."""
        nu, nv, nw = (np.array([c], np.float32) for c in direction)
        return float(self.contour_radius(nu, nv, nw)[0]) - self.scalp_mm

    def to_local(self, nominal: tuple[float, float, float]) -> np.ndarray:
        """Nominal landmark coordinates to this head's local coordinates."""
        return np.asarray(nominal) * np.asarray(self.scale)

    def to_world(self, local: np.ndarray) -> np.ndarray:
        """Local coordinates to world (x, y, z)."""
        return self.rotation.T @ local + self.center

    def bounds(self, shape: Ellipsoid) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y, z) centre and half size of the bounding box of a nominal ellipsoid."""
        scale = np.diag(self.scale)
        to_world = self.rotation.T @ scale @ shape.frame() @ np.diag(shape.axes)
        return self.to_world(scale @ np.asarray(shape.center)), np.sqrt((to_world**2).sum(axis=1))

    def world_half_extent(self) -> np.ndarray:
        """Half size of the head's bounding box along world (x, y, z), generously rounded up."""
        a, b, up, down = self.skin
        axes = np.diag((a + self.temporalis_mm, b, max(up, down))) * (1.0 + sum(abs(r) for r in self.ripple))
        return np.sqrt(((self.rotation.T @ axes) ** 2).sum(axis=1)) + 2.0


def _random_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    directions = rng.normal(size=(n, 3))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def rotation(yaw: float, roll: float, pitch: float) -> np.ndarray:
    cz, sz, cy, sy, cx, sx = (math.cos(yaw), math.sin(yaw), math.cos(roll), math.sin(roll),
                              math.cos(pitch), math.sin(pitch))
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return about_z @ about_y @ about_x
