"""Synthetic production-line videos that look like what the OpenMV camera sees.

A dark perforated metal plate, light-blue or white surgical masks (pleats, edge
binding with stitching, weld dots, ear loops) pushed through the frame; some masks
are defective (cuts and holes through which the plate shows, torn notches, stains).
Speed, position, rotation, scale, lighting, white balance, sensor noise and motion
blur vary. Everything is drawn from one seed, so the same params give the same
pixels, and the ground truth of every frame comes from the geometry that drew it:

- coverage: share of the frame covered by the mask body (ear loops do not count);
- label: ``no_mask`` below half coverage (the published rule), else ``bad`` when a
  defect is in view (at least half of its area inside the frame), else ``good``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COVERAGE_THRESHOLD = 0.5  # published rule: a frame shows a mask when half of it is covered
DEFECT_VISIBLE_SHARE = 0.5  # a defect counts when at least this share of it is in the frame
DEFECT_KINDS = ("cut", "hole", "tear", "stain")

# Colours (RGB, 0-255). Plate and holes are neutral grey, mask fabric is bluish: the
# tests tell mask from background by colour to check the coverage labels.
PLATE = np.array([52.0, 52.0, 54.0])
HOLE = np.array([176.0, 176.0, 176.0])
FABRIC = {"blue": np.array([190.0, 210.0, 236.0]), "white": np.array([216.0, 227.0, 247.0])}
BINDING = np.array([222.0, 230.0, 248.0])
STITCH = (86, 118, 190)
WELD = (120, 160, 216)
LOOP = (233, 234, 236)
TEAR_INNER = (112, 150, 208)
STAIN = np.array([188.0, 150.0, 78.0])


@dataclass(frozen=True)
class DemoSpec:
    seed: int
    videos: int
    seconds: float
    fps: int
    size: int
    mix: dict
    crf: int = 20

    @classmethod
    def from_params(cls, demo: dict) -> "DemoSpec":
        return cls(seed=demo["seed"], videos=demo["videos"], seconds=demo["seconds"], fps=demo["fps"],
                   size=demo["size"], mix=dict(demo["mix"]), crf=demo["crf"])

    @property
    def frames_per_video(self) -> int:
        return int(round(self.seconds * self.fps))


@dataclass
class Sprite:
    """A mask drawn once, in its own coordinates, then moved through the frame."""
    rgb: np.ndarray          # (h, w, 3) float32, colour where alpha > 0
    alpha: np.ndarray        # (h, w) float32 in [0, 1]: body and loops, 0 in holes and cuts
    body: np.ndarray         # (h, w) float32: the mask body including its holes (coverage)
    defect_ids: np.ndarray   # (h, w) uint8: 0 none, i = defect i
    defect_areas: list[int]  # pixels of each defect, in sprite coordinates
    defect_kinds: list[str]
    center: tuple[float, float]
    half_extent: float       # half width including the loops (to start and end outside the frame)


@dataclass(frozen=True)
class FrameTruth:
    label: str
    coverage: float
    defects_visible: int


@dataclass
class _Pass:
    sprite: Sprite
    defective: bool
    start: int                     # first frame of the pass
    positions: list = field(default_factory=list)  # per frame: (cx, cy, angle, scale, speed_px)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] (a coarse random grid, bicubically enlarged)."""
    grid = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC)
    return np.clip(np.asarray(img), -1, 1)


def make_plate(rng: np.random.Generator, size: int) -> np.ndarray:
    """A perforated dark plate, larger than the frame, float32 (P, P, 3)."""
    extent = int(size * 1.5)
    pitch = size / rng.uniform(7.5, 9.5)
    hole = pitch * rng.uniform(0.5, 0.62)
    angle = math.radians(rng.uniform(-4, 4))
    y, x = np.mgrid[0:extent, 0:extent].astype(np.float32)
    u = x * math.cos(angle) + y * math.sin(angle) + rng.uniform(0, pitch)
    v = -x * math.sin(angle) + y * math.cos(angle) + rng.uniform(0, pitch)
    du = np.abs((u % pitch) - pitch / 2)
    dv = np.abs((v % pitch) - pitch / 2)
    # Soft-edged square holes with rounded corners.
    corner = hole * 0.18
    qu = np.maximum(du - (hole / 2 - corner), 0)
    qv = np.maximum(dv - (hole / 2 - corner), 0)
    dist = np.sqrt(qu ** 2 + qv ** 2) - corner
    inside = np.clip(0.5 - dist / 1.2, 0, 1)[..., None]
    light = HOLE * (1 + 0.08 * _smooth_noise(rng, extent, extent, 5))[..., None]
    brushed = 1 + 0.06 * _smooth_noise(rng, extent, extent, 40)[..., None] + rng.normal(0, 0.02, (extent, extent, 1))
    metal = PLATE * brushed
    # A lit rim on the upper edge of each hole, as the real plate shows.
    rim = np.clip(0.5 - np.abs(dist - 1.5) / 1.5, 0, 1)[..., None] * (((v % pitch) < pitch / 2)[..., None])
    plate = metal * (1 - inside) + light * inside + 30 * rim
    return plate.astype(np.float32)


def _bezier(p0, p1, p2, steps=24):
    t = np.linspace(0, 1, steps)[:, None]
    pts = (1 - t) ** 2 * np.array(p0) + 2 * (1 - t) * t * np.array(p1) + t ** 2 * np.array(p2)
    return [tuple(p) for p in pts]


def _draw_loops(rng, d_rgb, d_alpha, body_h, box, loop_out) -> None:
    """Ear loops, drawn first: the body and the weld dots cover their ends."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    cord = max(2, int(round(body_h * 0.022)))
    for side in (-1, 1):
        xa = x0 + bw * 0.03 if side < 0 else x1 - bw * 0.03
        top, bottom = (xa, y0 + bh * 0.07), (xa, y1 - bh * 0.07)
        bulge = (xa + side * loop_out * 2, (y0 + y1) / 2 + rng.uniform(-0.25, 0.25) * bh)
        if rng.random() < 0.25:  # a loop lying folded over the mask
            bulge = (xa - side * loop_out * 1.2, (y0 + y1) / 2 + rng.uniform(-0.2, 0.2) * bh)
        pts = _bezier(top, bulge, bottom)
        d_rgb.line(pts, fill=LOOP, width=cord, joint="curve")
        d_alpha.line(pts, fill=255, width=cord, joint="curve")


def _fabric(rng, rgb: Image.Image, body_np: np.ndarray, box) -> Image.Image:
    """Fabric with three pleats: each band lit at its top, shaded towards the fold."""
    x0, y0, x1, y1 = box
    bh = y1 - y0
    h, w = body_np.shape
    fabric = FABRIC["blue"] if rng.random() < 0.7 else FABRIC["white"]
    fabric = fabric * rng.uniform(0.97, 1.02)
    yy = np.arange(h, dtype=np.float32)[:, None]
    folds = np.sort(np.array([0.3, 0.52, 0.74]) + rng.uniform(-0.04, 0.04, 3)) * bh + y0
    edges = np.concatenate([[y0], folds, [y1]])
    shade = np.ones((h, 1), np.float32)
    for a, b in zip(edges[:-1], edges[1:]):
        band = (yy >= a) & (yy < b)
        t = (yy - a) / max(b - a, 1)
        shade = np.where(band, 1.03 - 0.1 * t, shade)
    for f in folds:
        shade *= 1 - 0.22 * np.exp(-((yy - f) / max(1.0, bh * 0.008)) ** 2)
    texture = 1 + 0.025 * _smooth_noise(rng, h, w, 24) + rng.normal(0, 0.012, (h, w))
    fabric_np = fabric[None, None, :] * (shade * texture)[..., None]
    mask3 = body_np[..., None]
    rgb_np = np.asarray(rgb, dtype=np.float32) * (1 - mask3) + fabric_np * mask3
    return Image.fromarray(np.clip(rgb_np, 0, 255).astype(np.uint8))


def _binding(rng, d_rgb, body_h, box) -> float:
    """Side strips with two columns of stitches, thin top and bottom strips, weld dots; returns
    the side strips' width."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    side_w = bw * rng.uniform(0.06, 0.08)
    edge_h = bh * 0.035
    stitch = max(1, int(round(body_h * 0.01)))
    for xs in (x0, x1 - side_w):
        d_rgb.rectangle([xs, y0, xs + side_w, y1 - 1], fill=tuple(int(c) for c in BINDING))
        for col in (0.3, 0.7):
            xc = xs + side_w * col
            for yc in np.arange(y0 + bh * 0.04, y1 - bh * 0.04, bh * 0.028):
                d_rgb.line([(xc, yc), (xc, yc + bh * 0.013)], fill=STITCH, width=stitch)
    for ye in (y0, y1 - edge_h):
        d_rgb.rectangle([x0 + side_w, ye, x1 - side_w, ye + edge_h], fill=tuple(int(c) for c in BINDING))
        yc = ye + edge_h / 2
        for xc in np.arange(x0 + side_w, x1 - side_w, bh * 0.03):
            d_rgb.line([(xc, yc), (xc + bh * 0.015, yc)], fill=STITCH, width=stitch)
    weld = body_h * 0.03
    for xc in (x0 + side_w / 2, x1 - side_w / 2):
        for yc in (y0 + bh * 0.07, y1 - bh * 0.07):
            d_rgb.ellipse([xc - weld, yc - weld, xc + weld, yc + weld], fill=WELD)
    return side_w


def _defect(rng, kind: str, ident: int, centre, body_h, draws, stain_layer, size):
    """One defect at `centre`; returns the stain layer (made on the first stain)."""
    cx, cy = centre
    d_rgb, d_alpha, d_ids = draws
    if kind == "cut":  # a slit through all layers: the plate shows through
        length = body_h * rng.uniform(0.12, 0.22)
        ang = math.radians(90 + rng.uniform(-30, 30))
        bend = rng.uniform(-0.3, 0.3) * length
        p0 = (cx - math.cos(ang) * length / 2, cy - math.sin(ang) * length / 2)
        p2 = (cx + math.cos(ang) * length / 2, cy + math.sin(ang) * length / 2)
        pts = _bezier(p0, (cx + bend, cy), p2, steps=8)
        width = max(2, int(round(body_h * 0.022)))
        d_alpha.line(pts, fill=0, width=width, joint="curve")
        d_ids.line(pts, fill=ident, width=width + 2, joint="curve")
    elif kind == "hole":
        r = body_h * rng.uniform(0.04, 0.07)
        box = [cx - r, cy - r * rng.uniform(0.7, 1.0), cx + r, cy + r * rng.uniform(0.7, 1.0)]
        d_alpha.ellipse(box, fill=0)
        d_ids.ellipse(box, fill=ident)
    elif kind == "tear":  # a torn notch showing the blue inner layer, dark edge
        extent = body_h * rng.uniform(0.09, 0.15)
        ang = rng.uniform(0, 2 * math.pi)
        tri = [(cx, cy),
               (cx + extent * math.cos(ang), cy + extent * math.sin(ang)),
               (cx + extent * math.cos(ang + 0.6), cy + extent * math.sin(ang + 0.6))]
        d_rgb.polygon(tri, fill=TEAR_INNER, outline=(60, 70, 95))
        d_rgb.line(tri[:2], fill=(45, 45, 55), width=max(1, int(body_h * 0.012)))
        d_ids.polygon(tri, fill=ident)
    else:  # stain: an irregular translucent blot
        r = body_h * rng.uniform(0.06, 0.1)
        n = int(rng.integers(8, 13))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = r * rng.uniform(0.6, 1.1, n)
        poly = [(cx + rr * math.cos(a), cy + rr * math.sin(a)) for a, rr in zip(angles, radii)]
        if stain_layer is None:
            stain_layer = Image.new("L", size, 0)
        ImageDraw.Draw(stain_layer).polygon(poly, fill=int(255 * rng.uniform(0.65, 0.85)))
        d_ids.polygon(poly, fill=ident)
    return stain_layer


def make_sprite(rng: np.random.Generator, body_h: float, defective: bool) -> Sprite:
    """Draw one mask: body with pleats, binding, stitching, weld dots, loops, defects."""
    bh = int(round(body_h))
    bw = int(round(body_h * rng.uniform(1.65, 1.85)))
    loop_out = body_h * rng.uniform(0.25, 0.45)
    pad = int(loop_out + body_h * 0.08)
    w, h = bw + 2 * pad, int(bh * 1.2)
    x0, y0 = pad, (h - bh) // 2
    x1, y1 = x0 + bw, y0 + bh
    box = (x0, y0, x1, y1)

    rgb = Image.new("RGB", (w, h), (0, 0, 0))
    alpha = Image.new("L", (w, h), 0)
    body = Image.new("L", (w, h), 0)
    ids = Image.new("L", (w, h), 0)
    d_rgb, d_alpha, d_body, d_ids = (ImageDraw.Draw(im) for im in (rgb, alpha, body, ids))

    _draw_loops(rng, d_rgb, d_alpha, body_h, box, loop_out)
    d_body.rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
    body_np = np.asarray(body, dtype=np.float32) / 255.0
    rgb = _fabric(rng, rgb, body_np, box)
    d_rgb = ImageDraw.Draw(rgb)
    d_alpha.rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
    side_w = _binding(rng, d_rgb, body_h, box)

    kinds: list[str] = []
    stain_layer = None
    if defective:
        for i in range(int(rng.integers(1, 4))):
            kind = DEFECT_KINDS[int(rng.integers(0, len(DEFECT_KINDS)))]
            kinds.append(kind)
            cx = rng.uniform(x0 + side_w + 0.08 * bw, x1 - side_w - 0.08 * bw)
            cy = rng.uniform(y0 + 0.12 * bh, y1 - 0.12 * bh)
            stain_layer = _defect(rng, kind, i + 1, (cx, cy), body_h, (d_rgb, d_alpha, d_ids), stain_layer, (w, h))

    rgb_np = np.asarray(rgb, dtype=np.float32)
    if stain_layer is not None:
        s = np.asarray(stain_layer.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32)[..., None] / 255.0
        rgb_np = rgb_np * (1 - s) + STAIN * (rgb_np.mean(axis=-1, keepdims=True) / 225.0) * s
    ids_np = np.asarray(ids, dtype=np.uint8) * (body_np > 0.5)
    areas = [int((ids_np == i + 1).sum()) for i in range(len(kinds))]
    return Sprite(rgb=rgb_np.astype(np.float32), alpha=np.asarray(alpha, dtype=np.float32) / 255.0, body=body_np,
                  defect_ids=ids_np.astype(np.uint8), defect_areas=areas, defect_kinds=kinds,
                  center=((x0 + x1) / 2, (y0 + y1) / 2), half_extent=bw / 2 + loop_out * 1.6)


def _warp(arr: np.ndarray, coeffs, size: int, resample) -> np.ndarray:
    # A zero border: Pillow's bilinear sampling of float images reads past the last
    # row and column (NaN seen here), and the border gives clean edges anyway.
    border = 2
    a, b, c, d, e, f = coeffs
    arr = np.pad(arr if arr.dtype == np.uint8 else arr.astype(np.float32), border)
    mode = "L" if arr.dtype == np.uint8 else "F"  # "F" reads the buffer as float32
    img = Image.fromarray(arr, mode=mode)
    out = img.transform((size, size), Image.AFFINE, data=(a, b, c + border, d, e, f + border),
                        resample=resample, fillcolor=0)
    return np.asarray(out)


def place(sprite: Sprite, size: int, cx: float, cy: float, angle_deg: float, scale: float):
    """Warp the sprite into a size x size frame with its body centre at (cx, cy).

    Returns premultiplied rgb, alpha, body and defect ids in frame coordinates.
    """
    a = math.radians(angle_deg)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    sx, sy = sprite.center
    # Inverse map: frame pixel (x, y) -> sprite pixel (u, v).
    coeffs = (cos, sin, sx - cos * cx - sin * cy, -sin, cos, sy + sin * cx - cos * cy)
    alpha = _warp(sprite.alpha, coeffs, size, Image.BILINEAR)
    rgb = np.stack([_warp(np.ascontiguousarray(sprite.rgb[..., c] * sprite.alpha), coeffs, size, Image.BILINEAR)
                    for c in range(3)], axis=-1)
    body = _warp(sprite.body, coeffs, size, Image.BILINEAR)
    ids = _warp(sprite.defect_ids, coeffs, size, Image.NEAREST)
    return rgb, alpha, body, ids


def _motion_blur(arr: np.ndarray, length: int) -> np.ndarray:
    """Horizontal box blur (the line moves masks sideways)."""
    if length <= 1:
        return arr
    pad = [(0, 0)] * arr.ndim
    pad[1] = (length // 2, length - 1 - length // 2)
    padded = np.pad(arr, pad, mode="edge")
    c = np.cumsum(padded, axis=1, dtype=np.float64)
    c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
    out = (c[:, length:] - c[:, :-length]) / length
    return out.astype(np.float32)


def truth_for(sprite: Sprite, body: np.ndarray, ids: np.ndarray, scale: float) -> FrameTruth:
    coverage = float((body > 0.5).mean())
    visible = 0
    for i, area in enumerate(sprite.defect_areas):
        in_frame = int((ids == i + 1).sum())
        if area > 0 and in_frame >= DEFECT_VISIBLE_SHARE * area * scale * scale:
            visible += 1
    if coverage < COVERAGE_THRESHOLD:
        label = "no_mask"
    elif visible:
        label = "bad"
    else:
        label = "good"
    return FrameTruth(label=label, coverage=round(coverage, 4), defects_visible=visible)


class VideoRenderer:
    """Renders one video frame by frame; deterministic in (spec.seed, index)."""

    def __init__(self, spec: DemoSpec, index: int):
        self.spec = spec
        self.rng = np.random.default_rng([spec.seed, index])
        s = spec.size
        self.plate = make_plate(self.rng, s)
        off = self.rng.uniform(0, self.plate.shape[0] - s, 2).astype(int)
        self.background = self.plate[off[1]:off[1] + s, off[0]:off[0] + s]
        self.direction = 1 if self.rng.random() < 0.5 else -1
        self.gain = self.rng.uniform(0.72, 1.02)
        self.white_balance = np.array([1 + self.rng.uniform(-0.015, 0.015), 1.0, 1 + self.rng.uniform(-0.015, 0.015)])
        self.noise_sigma = self.rng.uniform(1.5, 4.5)
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
        vignette = 1 - self.rng.uniform(0.1, 0.25) * (xx ** 2 + yy ** 2) * 2
        gradient = 1 + self.rng.uniform(-0.1, 0.1) * xx + self.rng.uniform(-0.1, 0.1) * yy
        self.light_field = (vignette * gradient)[..., None]
        self.drift_phase = self.rng.uniform(0, 2 * math.pi)
        self.counts = {"good": 0, "bad": 0, "no_mask": 0}

    def _next_pass(self, frame: int) -> tuple[_Pass | None, int]:
        """Decide what comes next: a gap of empty plate (returns its length) or a mask pass."""
        spec, rng, s = self.spec, self.rng, self.spec.size
        total = max(1, sum(self.counts.values()))
        target = spec.mix
        if self.counts["no_mask"] / total < target["no_mask"] - 0.03 and frame > 0:
            return None, int(round(rng.uniform(0.3, 1.5) * spec.fps))
        masks = self.counts["good"] + self.counts["bad"]
        p_bad = target["bad"] / max(target["bad"] + target["good"], 1e-9)
        if p_bad <= 0:
            defective = False
        elif p_bad >= 1:
            defective = True
        elif masks and self.counts["bad"] / masks < p_bad - 0.05:
            defective = True
        elif masks and self.counts["bad"] / masks > p_bad + 0.05:
            defective = False
        else:
            defective = bool(rng.random() < p_bad)
        scale = rng.uniform(0.85, 1.15)
        sprite = make_sprite(rng, body_h=s * 0.78, defective=defective)
        p = _Pass(sprite=sprite, defective=defective, start=frame)
        d = self.direction
        half = sprite.half_extent * scale
        x_start = s / 2 - d * (s / 2 + half)
        x_end = s / 2 + d * (s / 2 + half)
        x_stop = s / 2 + rng.uniform(-0.18, 0.18) * s
        y = s / 2 + rng.uniform(-0.12, 0.12) * s
        angle = float(np.clip(rng.normal(0, 6), -15, 15))
        v_in = rng.uniform(1.0, 2.5) * s / spec.fps   # px per frame: 1 to 2.5 frame widths a second
        v_out = rng.uniform(1.0, 2.5) * s / spec.fps
        if self.counts["no_mask"] / total > target["no_mask"] + 0.03:
            dwell_s = rng.uniform(0.8, 2.0)  # entries and exits alone give too many no_mask frames
        else:
            dwell_s = rng.uniform(0.0, 1.0) if rng.random() < 0.8 else 0.0
        dwell = int(round(dwell_s * spec.fps))
        x = x_start
        while d * (x_stop - x) > 0:
            p.positions.append((x, y, angle, scale, v_in))
            x += d * v_in
            angle += rng.normal(0, 0.4)
        for _ in range(dwell):
            p.positions.append((x_stop + rng.normal(0, 0.3), y, angle, scale, 0.0))
        x = x_stop
        while d * (x_end - x) > 0:
            p.positions.append((x, y, angle, scale, v_out))
            x += d * v_out
            angle += rng.normal(0, 0.4)
            y += rng.normal(0, 0.3)
        return p, len(p.positions)

    def frames(self) -> Iterator[tuple[np.ndarray, FrameTruth]]:
        spec, s = self.spec, self.spec.size
        n = spec.frames_per_video
        current: _Pass | None = None
        remaining = 0
        for k in range(n):
            if remaining == 0:
                current, remaining = self._next_pass(k)
            remaining -= 1
            light = self.gain * (1 + 0.05 * math.sin(self.drift_phase + 2 * math.pi * k / (spec.fps * 11.0))
                                 + self.rng.normal(0, 0.01))
            image = self.background.copy()
            if current is not None:
                cx, cy, angle, scale, speed = current.positions[k - current.start]
                rgb, alpha, body, ids = place(current.sprite, s, cx, cy, angle, scale)
                blur = int(round(speed * 0.15))  # exposure ~ 15 % of the frame interval
                rgb, alpha = _motion_blur(rgb, blur), _motion_blur(alpha, blur)
                image = image * (1 - alpha[..., None]) + rgb
                truth = truth_for(current.sprite, body, ids, scale)
            else:
                truth = FrameTruth(label="no_mask", coverage=0.0, defects_visible=0)
            image = image * self.light_field * light * self.white_balance
            image = image + self.rng.normal(0, self.noise_sigma, image.shape)
            self.counts[truth.label] += 1
            yield np.clip(np.rint(image), 0, 255).astype(np.uint8), truth
