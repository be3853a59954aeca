"""PyTorch DataLoader workers with lambdas, through marinade.get_context("spawn").

Real torch (the CPU build; installed for Python 3.11 only, see pyproject.toml),
two spawn workers, a ``__main__`` dataset class holding lambda transforms, a
lambda ``collate_fn`` and a lambda ``worker_init_fn``.
"""

from __future__ import annotations

import json

import pytest

from helpers import run_script

pytest.importorskip("torch", reason="torch is installed for Python 3.11 only (a CPU build)")

SCRIPT = r'''
import json

if __name__ == "__main__":
    import multiprocessing

    import torch
    from torch.utils.data import DataLoader, Dataset

    import marinade

    scale = 3.0

    class Squares(Dataset):
        def __init__(self, n, transforms):
            self.n, self.transforms = n, transforms

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            x = torch.tensor([float(i)])
            for transform in self.transforms:
                x = transform(x)
            info = torch.utils.data.get_worker_info()
            return {"x": x, "i": i, "worker": info.id, "seed": torch.initial_seed()}

    dataset = Squares(10, [lambda x: x * x, lambda x: x * scale])

    def collate(batch):
        return (torch.cat([b["x"] for b in batch]), [b["i"] for b in batch],
                sorted({b["worker"] for b in batch}), sorted({b["seed"] for b in batch}))

    out = {}
    loader = DataLoader(dataset, batch_size=4, num_workers=2,
                        collate_fn=lambda batch: collate(batch),
                        worker_init_fn=lambda wid: torch.manual_seed(1000 + wid),
                        multiprocessing_context=marinade.get_context("spawn"),
                        persistent_workers=True)
    epochs = []
    for _ in range(2):  # persistent workers: the same processes serve both epochs
        batches = list(loader)
        epochs.append([[x.tolist(), idx] for x, idx, _, _ in batches])
    out["epochs"] = epochs
    out["workers"] = sorted({w for _, _, ws, _ in batches for w in ws})
    out["seeds"] = sorted({s for _, _, _, ss in batches for s in ss})
    # Tensors came back through torch's shared-memory reducers, which torch
    # registers in multiprocessing's registry: marinade's pickler used them.
    out["shared"] = all(x.is_shared() for x, _, _, _ in batches)
    del loader

    # The same loader on the stdlib's spawn context cannot start its workers.
    try:
        list(DataLoader(dataset, batch_size=4, num_workers=1,
                        multiprocessing_context=multiprocessing.get_context("spawn")))
        out["stdlib"] = "worked"
    except Exception as exc:
        out["stdlib"] = type(exc).__name__
    print(json.dumps(out))
'''


def test_dataloader_spawn_workers_with_lambdas(tmp_path):
    proc = run_script(tmp_path, SCRIPT, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = [[[0.0, 3.0, 12.0, 27.0], [0, 1, 2, 3]],
                [[48.0, 75.0, 108.0, 147.0], [4, 5, 6, 7]],
                [[192.0, 243.0], [8, 9]]]
    assert out["epochs"] == [expected, expected]
    assert out["workers"] == [0, 1]
    assert out["seeds"] == [1000, 1001]  # the lambda worker_init_fn ran in each worker
    assert out["shared"] is True
    assert out["stdlib"] in ("PicklingError", "AttributeError")
