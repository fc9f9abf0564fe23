"""A cheaper backbone taught by the published one, without labels: feature distillation from the
published SimCLR backbone (64 px, stride-1 stem) into a network with a stride-2 stem (issue 17's
cheaper inference), to test whether the stride-2 candidates lost for want of features at their
scale rather than for the architecture.

    scripts/venv.sh python benchmarks/distill_backbone.py --out ../distilled-80.safetensors \
        [--input-size 80] [--steps 1500]

The student starts from the published weights (same shapes; only the stem's stride differs) and
learns, on random crops of the training images (no labels; dev/ is never read), to give the
teacher's pooled block-4 features and its 16 output features for the same crop, the teacher
seeing it at 64 px and the student at its own input size. The file is a backbone for
`pretrain.init` with `pretrain.epochs: 0` (benchmarks/real_data_experiments.py, the distill-* runs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import maskinspect  # noqa: E402,F401 - pins threads and numeric kernels before numpy loads


def images(folder: Path):
    import numpy as np
    from PIL import Image

    paths = sorted(p for p in folder.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"distill_backbone: {folder}: no images in class folders")
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((128, 128), Image.BICUBIC)) for p in paths])


def random_crops(data, n: int, gen):
    """n random square crops (0.5-1 of the side) of the 128 px images, flipped and brightened at
    random, at 96 px: the views both networks see."""
    import torch
    import torch.nn.functional as F

    crops = []
    for i in torch.randint(len(data), (n,), generator=gen).tolist():
        side = int(128 * (0.5 + 0.5 * torch.rand(1, generator=gen).item()))
        y, x = (torch.randint(128 - side + 1, (2,), generator=gen)).tolist()
        c = data[i, :, y:y + side, x:x + side]
        if torch.rand(1, generator=gen) < 0.5:
            c = c.flip(2)
        if torch.rand(1, generator=gen) < 0.5:
            c = c.flip(1)
        c = (c * (0.6 + 0.8 * torch.rand(3, 1, 1, generator=gen))).clamp(0, 1)
        crops.append(F.interpolate(c[None], size=(96, 96), mode="bilinear", antialias=True, align_corners=False)[0])
    return torch.stack(crops)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train", type=Path, help="labelled class folders (default: the published training frames, "
                                                 "pins/published-frames-train.yaml)")
    p.add_argument("--teacher", type=Path, help="the teacher's weights (default: the published checkpoint, "
                                                   "pins/published-checkpoint.yaml)")
    p.add_argument("--input-size", type=int, default=80)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    args = p.parse_args()
    from maskinspect.workflow import pinned

    args.train = args.train or pinned.local(ROOT / pinned.pin_path("published-frames-train"))
    args.teacher = args.teacher or pinned.local(ROOT / pinned.pin_path("published-checkpoint"))

    import torch
    import torch.nn.functional as F

    from maskinspect.model import models

    torch.manual_seed(0)
    torch.set_num_threads(2)
    state = models.read_any_weights(args.teacher)
    teacher = models.backbone(0.125, 16, 1)
    student = models.backbone(0.125, 16, 2)
    models.load_into(teacher, state, str(args.teacher))
    models.load_into(student, state, str(args.teacher))
    teacher.eval().requires_grad_(False)
    data = torch.from_numpy(images(args.train)).permute(0, 3, 1, 2).float() / 255  # N, 3, 128, 128
    print(f"distill_backbone: {len(data)} images, student at {args.input_size} px, {args.steps} steps", file=sys.stderr)

    def pooled(net, x):
        """Block 4's output, pooled (64), and the backbone's 16 features."""
        h = net[:-3](x)
        return h.mean((2, 3)), net[-3:](h)

    opt = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    gen = torch.Generator().manual_seed(1)
    start = time.time()
    for step in range(args.steps):
        batch = random_crops(data, args.batch, gen)
        t_in = F.interpolate(batch, size=64, mode="bilinear", antialias=True, align_corners=False)
        s_in = F.interpolate(batch, size=args.input_size, mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            t_pool, t_feat = pooled(teacher, t_in)
        s_pool, s_feat = pooled(student, s_in)
        loss = (2 - F.cosine_similarity(s_pool, t_pool).mean() - F.cosine_similarity(s_feat, t_feat).mean()
                + F.mse_loss(s_feat, t_feat) / t_feat.var())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step}: loss {loss.item():.4f} ({time.time() - start:.0f} s)", file=sys.stderr)
    student.eval()
    models.save_weights(args.out, student, {"distilled_from": str(args.teacher), "input_size": args.input_size,
                                            "stem_stride": 2, "steps": args.steps})
    print(f"distill_backbone: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
