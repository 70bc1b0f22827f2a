import pytest
import torch


def _toy_scene(shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """A structured occupancy frame: road and sidewalk on the ground layer, boxes of cars and buildings, free above."""
    g = torch.Generator().manual_seed(seed)
    x, y, z = shape
    occ = torch.full(shape, 17, dtype=torch.uint8)
    occ[:, :, 0] = 11  # driveable surface
    band = int(torch.randint(x // 4, x // 2, (1,), generator=g))
    occ[:, band:band + 2, 0] = 13  # sidewalk stripe
    occ[:, band + 2:, 0:2] = 16  # vegetation beside the road
    for cls, size in ((4, 3), (4, 3), (15, 6)):
        cx, cy = (int(v) for v in torch.randint(0, x - size, (2,), generator=g))
        occ[cx:cx + size, cy:cy + size, 1:min(z, 3)] = cls
    return occ


@pytest.fixture
def toy_occ():
    def make(batch: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
        return torch.stack([_toy_scene(shape, seed * 1000 + i) for i in range(batch)])

    return make
