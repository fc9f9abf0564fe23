"""The camera's input path: the firmware's own bilinear scaling, checked pixel for pixel against
a line-by-line transliteration of its C code (packed RGB565 words, SMLAD on 16-bit halves), and
what the model gets from it."""
import numpy as np
import pytest

from maskinspect.device.camera import SENSOR, camera_input, camera_pixels, expand, firmware_resize, rgb565, to_rgb565


def smlad(x: int, y: int, acc: int) -> int:
    """ARM's SMLAD: acc + x.lo * y.lo + x.hi * y.hi on signed 16-bit halves."""
    def s16(v):
        v &= 0xFFFF
        return v - 0x10000 if v & 0x8000 else v
    return acc + s16(x) * s16(y) + s16(x >> 16) * s16(y >> 16)


def firmware_c(image: np.ndarray, size: int) -> np.ndarray:
    """imlib_draw_image(dst size x size RGB565, src, 0, 0, 1, 1, NULL, -1, 256, NULL, NULL,
    BILINEAR | CENTER | SCALE_ASPECT_EXPAND | BLACK_BACKGROUND) of OpenMV v4.5.6-v4.8.1, one
    pixel at a time, as the C code does it (lib/imlib/draw.c)."""
    f32 = np.float32
    h, w = image.shape
    scale = max(f32(size) / f32(w), f32(size) / f32(h))
    out = np.zeros((size, size), np.uint16)
    starts = []
    for src_len in (w, h):
        scaled = int(np.floor(scale * f32(src_len)))
        dst_start = int(np.floor(f32(size - scaled) / f32(2)))
        src_start = -dst_start if dst_start < 0 else 0
        dst_start = max(dst_start, 0)
        starts.append((dst_start, min(dst_start + scaled - src_start, size),
                       int(np.floor(f32(src_start << 16) / scale)) - 0x8000))
    (x0, x1, x_reset), (y0, y1, y_reset) = starts
    frac = int(np.floor(f32(65536.0) / scale))
    mask_r, mask_g, mask_b = 0x7C007C00, 0x07E007E0, 0x001F001F
    for y in range(y0, y1):
        ay = y_reset + (y - y0) * frac
        iy = ay >> 16
        r0, r1 = (0, 0) if iy < 0 else ((h - 1, h - 1) if iy >= h - 1 else (iy, iy + 1))
        smuad_y = (ay >> 11) & 0x1F
        smuad_y |= (32 - smuad_y) << 16
        for x in range(x0, x1):
            ax = x_reset + (x - x0) * frac
            ix = ax >> 16
            c0, c1 = (0, 0) if ix < 0 else ((w - 1, w - 1) if ix >= w - 1 else (ix, ix + 1))
            p00, p10, p01, p11 = (int(image[r0, c0]), int(image[r0, c1]), int(image[r1, c0]), int(image[r1, c1]))
            rgb_l = (p00 << 16) | p01
            rb_l, g_l = ((rgb_l >> 1) & mask_r) | (rgb_l & mask_b), rgb_l & mask_g
            rgb_r = (p10 << 16) | p11
            rb_r, g_r = ((rgb_r >> 1) & mask_r) | (rgb_r & mask_b), rgb_r & mask_g
            rb = (((smlad(smuad_y, rb_l, 0x4010) >> 5) & 0x7C1F) << 16) | ((smlad(smuad_y, rb_r, 0x4010) >> 5) & 0x7C1F)
            g = (((smlad(smuad_y, g_l, 0x200) >> 5) & 0x07E0) << 16) | ((smlad(smuad_y, g_r, 0x200) >> 5) & 0x07E0)
            smuad_x = (ax >> 11) & 0x1F
            smuad_x |= (32 - smuad_x) << 16
            rb_out, g_out = smlad(smuad_x, rb, 0x4010) >> 5, smlad(smuad_x, g, 0x200) >> 5
            out[y, x] = ((rb_out << 1) & 0xF800) | (g_out & 0x07E0) | (rb_out & 0x001F)
    return out


def packed(r5, g6, b5) -> np.ndarray:
    return (r5.astype(np.uint16) << 11) | (g6.astype(np.uint16) << 5) | b5.astype(np.uint16)


@pytest.mark.parametrize("shape,size", [((240, 240), 64), ((256, 256), 64), ((240, 320), 64), ((240, 240), 48),
                                        ((64, 64), 48)])
def test_the_firmwares_bilinear_pixel_for_pixel(shape, size):
    rng = np.random.default_rng(sum(shape) + size)
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    planes = to_rgb565(frame)
    assert np.array_equal(packed(*firmware_resize(*planes, size)), firmware_c(packed(*planes), size))


def test_a_downscale_samples_and_aliases_instead_of_averaging():
    """240 -> 64 takes every 3.75th pixel (mixing two neighbours): a 1-pixel line pattern survives
    as strong stripes where an averaging filter turns it an even grey."""
    from PIL import Image

    stripes = np.zeros((SENSOR, SENSOR, 3), np.uint8)
    stripes[:, ::2] = 255
    pixels = camera_pixels(stripes[None], 64)[0].astype(float)
    averaged = np.asarray(Image.fromarray(stripes).resize((64, 64), Image.BOX)).astype(float)
    assert pixels.std() > 3 * averaged.std()  # (76 against 21, measured)


def test_what_the_model_gets_is_rgb565_expanded_xor_0x80():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)  # already at the input size: a copy
    fed = camera_input(frames, 64)
    assert fed.dtype == np.int8 and fed.shape == (2, 64, 64, 3)
    assert np.array_equal(fed.view(np.uint8) ^ 0x80, rgb565(frames))
    assert np.array_equal(fed.astype(np.int16), rgb565(frames).astype(np.int16) - 128)
    assert np.array_equal(expand(*to_rgb565(np.array([[255, 255, 255], [0, 0, 0]], np.uint8))),
                          [[255, 255, 255], [0, 0, 0]])  # white stays white, black black


def test_training_through_the_camera_path_gives_the_cameras_pixels():
    """finetune's CameraPath: with no jitter, exactly the pixels the camera feeds the model; with
    colour jitter, still pixels an RGB565 sensor can deliver (every channel on its 5/6-bit grid)."""
    import torch
    from PIL import Image

    from maskinspect.model.finetune import CameraPath

    still = {"color_jitter": 0.0, "hue": 0.0, "rotation": 0, "min_scale": 1.0, "hflip": False, "vflip": False,
             "camera": 1.0, "noise": 0.0}
    frame = np.random.default_rng(3).integers(0, 256, (SENSOR, SENSOR, 3), dtype=np.uint8)
    got = CameraPath(still, 64)(Image.fromarray(frame))
    want = torch.from_numpy(camera_pixels(frame[None], 64)[0].transpose(2, 0, 1).copy()).float() / 255.0
    assert torch.equal(got, want)

    torch.manual_seed(0)
    jittered = CameraPath({**still, "color_jitter": 0.4, "hue": 0.05, "rotation": 15, "min_scale": 0.7}, 64)
    pixels = (jittered(Image.fromarray(frame)) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert pixels.shape == (64, 64, 3)
    assert np.array_equal(pixels, rgb565(pixels))
