"""PyTorch peer of bench_gpu's mlp_step: one SGD training step of an MLP 784-1024-1024-10 (ReLU,
softmax cross-entropy) on a batch of 4096 float32 samples, on the same GPU. TF32 stays off, as in
tessera's cuBLAS calls, so both run full float32 GEMMs.

Usage: python3 bench/gpu/torch_mlp_step_cuda.py [--batch 4096] [--reps 50]
"""
import argparse
import statistics

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_mlp_step_cuda: no CUDA device; nothing measured")
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 10)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(args.batch, 784, device=dev)
    y = torch.arange(args.batch, device=dev) % 10

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(args.reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        loss = step()
        loss.item()  # tessera's step reads its loss on the host too
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    ms = statistics.median(times)
    flops = 6.0 * args.batch * (784 * 1024 + 1024 * 1024 + 1024 * 10)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}: mlp_step 784-1024-1024-10 batch "
          f"{args.batch}: {ms:.3f} ms ({flops / ms * 1e-9:.1f} TFLOP/s in GEMMs' terms)")


if __name__ == "__main__":
    main()
