"""The pieces every trainer shares (difflab.training.loop), checked directly: the warm-up's closed form,
the optimizer's flat round trip, the data order's epochs, the log a resumed run continues."""

from __future__ import annotations

import torch

from difflab.training.loop import clipped_step, open_log, warmup_lr
from difflab.training.state import DataOrder, flatten_optimizer, unflatten_optimizer


def test_warmup_lr_is_linear_then_constant():
    assert [warmup_lr(1e-3, 4, s) for s in (1, 2, 4, 5, 100)] == [2.5e-4, 5e-4, 1e-3, 1e-3, 1e-3]
    assert warmup_lr(3e-4, 0, 1) == 3e-4


def _adam_after_steps(n: int, seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    for _ in range(n):
        opt.zero_grad()
        net(x).pow(2).sum().backward()
        opt.step()
    return net, opt, x


def test_flattened_optimizer_resumes_the_same_step():
    net, opt, x = _adam_after_steps(3)
    tensors, groups = flatten_optimizer(opt, prefix="dopt.")
    assert all(k.startswith("dopt.") for k in tensors)
    tensors = {k: v.clone() for k, v in tensors.items()}  # as read back from a checkpoint, not the live moments
    # a fresh optimizer loaded from the flat tensors takes the step the original takes
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(net.state_dict())
    twin_opt = torch.optim.Adam(twin.parameters(), lr=0.1)
    twin_opt.load_state_dict(unflatten_optimizer({**tensors, "opt.0.noise": torch.zeros(1)}, groups, prefix="dopt."))
    for o, m in ((opt, net), (twin_opt, twin)):
        o.zero_grad()
        m(x).pow(2).sum().backward()
        o.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_clipped_step_returns_the_norm_and_clips():
    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.zero_()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    net.weight.grad = torch.tensor([[3.0, 4.0]])
    assert clipped_step(net, opt, 1.0) == 5.0
    torch.testing.assert_close(net.weight, torch.tensor([[-0.6, -0.8]]))  # the step of the gradient clipped to norm 1


def test_data_order_visits_every_example_once_per_epoch():
    order = DataOrder(10, 4, torch.Generator().manual_seed(0))
    first = torch.cat([order.next() for _ in range(5)])  # 20 indices: two whole epochs
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:].tolist()) == list(range(10))


def test_open_log_keeps_rows_up_to_the_step_and_drops_half_written_ones(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss\n50,0.5\n100,0.4\n150,0.3\n20")  # the last row was cut off by a kill
    with open_log(path, 100, "step,loss") as f:
        f.write("150,0.31\n")
    assert path.read_text() == "step,loss\n50,0.5\n100,0.4\n150,0.31\n"
    with open_log(tmp_path / "new.csv", 0, "step,loss") as f:
        pass
    assert (tmp_path / "new.csv").read_text() == "step,loss\n"
