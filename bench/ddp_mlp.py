#!/usr/bin/python3
"""PyTorch DistributedDataParallel peer of bench_data_parallel and bench_allreduce (CPU, gloo).

    /usr/bin/python3 bench/ddp_mlp.py            # Debian's python3-torch

For 1 and 2 processes: samples/s of SGD steps on the MLP 784-1024-1024-10 (batch 256 per
process) and 64-128-128-10 (batch 64 per process), the same loss (softmax cross-entropy) and
step as tessera's benchmark; the cores are divided between the processes (torch threads =
cores / processes). Then gloo's all-reduce of 1 863 690 floats (the large MLP's gradient) between
2 processes.
"""
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

CORES = os.cpu_count() or 1


def mlp(sizes):
    layers = []
    for i in range(1, len(sizes)):
        layers.append(torch.nn.Linear(sizes[i - 1], sizes[i]))
        if i + 1 < len(sizes):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def worker(rank, world, sizes, batch, steps, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(max(1, CORES // world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(1)
    model = torch.nn.parallel.DistributedDataParallel(mlp(sizes))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, sizes[0])
    y = torch.randint(0, sizes[-1], (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dist.barrier()
    elapsed = time.perf_counter() - t0
    if rank == 0:
        out.put(world * batch * steps / elapsed)
    dist.destroy_process_group()


def allreduce_worker(rank, world, count, rounds, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    buf = torch.ones(count)
    for _ in range(3):
        dist.all_reduce(buf)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(rounds):
        dist.all_reduce(buf)
    elapsed = (time.perf_counter() - t0) / rounds
    if rank == 0:
        out.put(elapsed)
    dist.destroy_process_group()


def run(target, world, *args):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = 29500 + (os.getpid() + world * 7 + len(args)) % 1000
    procs = [ctx.Process(target=target, args=(r, world, *args, port, out)) for r in range(world)]
    for p in procs:
        p.start()
    value = out.get(timeout=600)
    for p in procs:
        p.join(timeout=60)
    return value


def main():
    print(f"torch {torch.__version__}, {CORES} cores, gloo")
    for sizes, batch, steps in (([784, 1024, 1024, 10], 256, 40), ([64, 128, 128, 10], 64, 1500)):
        name = "-".join(map(str, sizes))
        for world in (1, 2):
            rate = run(worker, world, sizes, batch, steps)
            print(f"ddp mlp {name} batch {batch}/process processes {world}: {rate:.0f} samples/s")
    count = 1863690
    seconds = run(allreduce_worker, 2, count, 50)
    print(f"gloo all_reduce {count} floats (2 processes): {seconds * 1e6:.0f} us, {count * 4 / seconds / 1e9:.2f} GB/s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
