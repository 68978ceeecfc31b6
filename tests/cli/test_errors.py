"""Bad input gives one clear line and exit code 2, never a traceback, and writes nothing."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SYNTH, run_main, run_proc


def _bad_files(tmp_path, ckpt_bytes):
    (tmp_path / "truncated.safetensors").write_bytes(ckpt_bytes[: len(ckpt_bytes) // 2])
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00\x01not a checkpoint at all" * 10)
    meta = b'{"__metadata__":{}}'
    (tmp_path / "plain.safetensors").write_bytes(struct.pack("<Q", len(meta)) + meta)


CASES = {
    "missing file": (["evaluate", "{tmp}/nope.safetensors", "--data", SYNTH], "checkpoint not found"),
    "truncated": (["evaluate", "{tmp}/truncated.safetensors", "--data", SYNTH], "truncated"),
    "corrupt": (["info", "{tmp}/garbage.safetensors"], "not a safetensors file"),
    "no header": (["info", "{tmp}/plain.safetensors"], "no prunecli header"),
    "unknown model": (["train", "--model", "resnet21", "--data", SYNTH, "-o", "{tmp}/o.safetensors"], "unknown model"),
    "unknown method": (["prune", "{ckpt}", "--method", "l3", "--ratio", "0.5", "-o", "{tmp}/o.safetensors"],
                       "unknown method"),
    "analysis method in prune": (["prune", "{ckpt}", "--method", "sensitivity", "--ratio", "0.5",
                                  "-o", "{tmp}/o.safetensors"], "is an analysis method"),
    "unknown data": (["evaluate", "{ckpt}", "--data", "mnist"], "unknown data 'mnist'; `prunecli ls data` lists"),
    "ratio out of range": (["prune", "{ckpt}", "--ratio", "1.5", "-o", "{tmp}/o.safetensors"], "--ratio"),
    "macs above model": (["prune", "{ckpt}", "--target-macs", "5G", "-o", "{tmp}/o.safetensors"],
                         "not below the model"),
    "bad macs syntax": (["prune", "{ckpt}", "--target-macs", "lots", "-o", "{tmp}/o.safetensors"], "--target-macs"),
    "class mismatch": (["evaluate", "{ckpt}", "--data", "synthetic:classes=7"], "7 classes"),
    "resume without state": (["train", "--model", "resnet_tiny", "--data", SYNTH, "--resume",
                              "-o", "{tmp}/o.safetensors"], "nothing to resume"),
    "bad optimizer": (["train", "--model", "resnet_tiny", "--data", SYNTH, "--optimizer", "lion",
                       "-o", "{tmp}/o.safetensors"], "--optimizer"),
    "missing output folder": (["prune", "{ckpt}", "--ratio", "0.5", "-o", "{tmp}/no/such/dir/o.safetensors"],
                              "output folder does not exist"),
    "bad ignore": (["prune", "{ckpt}", "--ratio", "0.5", "--ignore", "nothing.here", "-o", "{tmp}/o.safetensors"],
                   "matches no layer"),
}

OUT = ["-o", "{tmp}/o.safetensors"]
TRAIN = ["train", "--model", "resnet_tiny", "--epochs", "1", "-b", "64", "--device", "cpu", *OUT]
EVAL = ["evaluate", "{ckpt}", "-b", "64", "--device", "cpu"]
FT = ["finetune", "{ckpt}", "--epochs", "1", "-b", "64", "--device", "cpu", *OUT]
MRI = ["train", "--model", "deq-edsr-tiny", "--epochs", "1", "-b", "2", "--device", "cpu", *OUT]
CASES |= {  # data families: each one's typical breakage, through the commands that read it
    # imagefolder (4 classes like the tiny checkpoint)
    "imagefolder: train, not an image": ([*TRAIN, "--data", "imagefolder:{d[imf_bad_train]}?size=16"],
                                         "cannot read image"),
    "imagefolder: evaluate, truncated": ([*EVAL, "--data", "imagefolder:{d[imf_trunc_val]}?size=32"], "1.png"),
    "imagefolder: finetune, not an image": ([*FT, "--data", "imagefolder:{d[imf_bad_train]}?size=32"],
                                            "cannot read image"),
    "imagefolder: analyze, truncated": (["analyze", "{ckpt}", "--method", "sensitivity", "--ratios", "0.5",
                                         "--data", "imagefolder:{d[imf_trunc_val]}?size=32", "-b", "64"],
                                        "cannot read image"),
    "imagefolder: prune calibration": (["prune", "{ckpt}", "--method", "taylor", "--ratio", "0.3", "-b", "64",
                                        "--data", "imagefolder:{d[imf_bad_train]}?size=32", *OUT], "cannot read image"),
    "imagefolder: profile --data": (["profile", "{ckpt}", "--data", "imagefolder:{d[imf_trunc_val]}?size=32",
                                     "--batch-sizes", "8", "--runs", "1", "--warmup", "0"], "cannot read image"),
    "imagefolder: skipping every image": ([*EVAL, "--skip-bad-images",
                                           "--data", "imagefolder:{d[imf_all_bad_val]}?size=32"],
                                          "none of the images"),
    "imagefolder: classes differ": ([*EVAL, "--data", "imagefolder:{d[imf_mismatch]}"], "classes differ"),
    "imagefolder: no classes": ([*TRAIN, "--data", "imagefolder:{d[imf_noclasses]}"], "no class sub-folders"),
    "imagefolder: no val": ([*TRAIN, "--data", "imagefolder:{d[imf_noval]}"], "missing folder"),
    "imagefolder: bad size": ([*EVAL, "--data", "imagefolder:{d[imf_2cls]}?size=big"], "size must be"),
    "imagefolder: bad option": ([*EVAL, "--data", "imagefolder:{d[imf_2cls]}?crop=1"], "bad imagefolder option"),
    "imagefolder: no folder": ([*EVAL, "--data", "imagefolder:{tmp}/nowhere"], "folder not found"),
    "imagefolder: no spec": ([*EVAL, "--data", "imagefolder"], "needs a folder"),
    "imagefolder: class count": ([*EVAL, "--data", "imagefolder:{d[imf_2cls]}?size=32"], "2 classes"),
    # HAM10000
    "ham10000: missing column": ([*TRAIN, "--data", "ham10000:{d[ham_nocol]}"], "lacks column(s) dx"),
    "ham10000: missing images": ([*TRAIN, "--data", "ham10000:{d[ham_noimages]}"], "are missing"),
    "ham10000: unknown dx": ([*TRAIN, "--data", "ham10000:{d[ham_baddx]}"], "unknown diagnosis"),
    "ham10000: corrupt image": ([*TRAIN, "--data", "ham10000:{d[ham_bad_image]}?size=16"], "ISIC_000.jpg"),
    "ham10000: csv not utf-8": ([*TRAIN, "--data", "ham10000:{d[ham_notutf8]}"], "cannot read"),
    "ham10000: bad test fraction": ([*TRAIN, "--data", "ham10000:{d[ham_bad_image]}?test=2"], "test"),
    "ham10000: no csv": ([*TRAIN, "--data", "ham10000:{d[imf_2cls]}"], "HAM10000_metadata.csv"),
    "ham10000: class count": ([*EVAL, "--data", "ham10000:{d[ham_bad_image]}?size=32"], "7 classes"),
    # CIFAR python pickles
    "cifar10: wrong shape": ([*TRAIN, "--data", "cifar10:{d[c10_shape]}"], "unexpected data shape"),
    "cifar10: strings": ([*TRAIN, "--data", "cifar10:{d[c10_strings]}"], "c10_strings"),
    "cifar10: labels out of range": ([*TRAIN, "--data", "cifar10:{d[c10_labels]}"], "labels outside"),
    "cifar10: no data entry": ([*TRAIN, "--data", "cifar10:{d[c10_nodata]}"], "lacks the"),
    "cifar10: not a dict": ([*TRAIN, "--data", "cifar10:{d[c10_list]}"], "does not hold a dict"),
    "cifar10: missing batches": ([*TRAIN, "--data", "cifar10:{d[c10_missing]}"], "data_batch_2"),
    "cifar10: not a pickle": ([*TRAIN, "--data", "cifar10:{d[c10_garbage]}"], "cannot read CIFAR file"),
    "cifar10: empty folder": ([*TRAIN, "--data", "cifar10:{d[c10_empty]}"], "no CIFAR batch files"),
    "cifar10: bad aug": ([*TRAIN, "--data", "cifar10:{d[c10_shape]}?aug=flip"], "bad cifar10 option"),
    "cifar10: no spec": ([*TRAIN, "--data", "cifar10"], "needs a folder"),
    "cifar100: wrong shape": ([*TRAIN, "--data", "cifar100:{d[c100_shape]}"], "unexpected data shape"),
    "cifar100: a file": ([*TRAIN, "--data", "cifar100:{d[a_file]}"], "folder not found"),
    "cifar100: class count": ([*EVAL, "--data", "cifar100:{d[c100_shape]}"], "100 classes"),
    # fastMRI HDF5
    "fastmri: truncated": ([*MRI, "--data", "fastmri:{d[fm_trunc]}"], "a.h5"),
    "fastmri: not hdf5": ([*MRI, "--data", "fastmri:{d[fm_garbage]}"], "a.h5"),
    "fastmri: no kspace": ([*MRI, "--data", "fastmri:{d[fm_nokspace]}"], "no `kspace`"),
    "fastmri: single-coil": ([*MRI, "--data", "fastmri:{d[fm_singlecoil]}"], "single-coil"),
    "fastmri: coil counts": ([*MRI, "--data", "fastmri:{d[fm_coils]}"], "coil counts"),
    "fastmri: sizes": ([*MRI, "--data", "fastmri:{d[fm_sizes]}"], "different sizes"),
    "fastmri: corrupt chunk": ([*MRI, "--data", "fastmri:{d[fm_chunk]}"], ".h5"),
    "fastmri: string kspace": ([*MRI, "--data", "fastmri:{d[fm_strings]}"], "must be complex"),
    "fastmri: no files": ([*MRI, "--data", "fastmri:{d[fm_empty]}"], "no .h5 files"),
    "fastmri: one file": ([*MRI, "--data", "fastmri:{d[fm_one]}"], "holds one file"),
    "fastmri: size too big": ([*MRI, "--data", "fastmri:{d[fm_one]}?size=64"], "exceeds"),
    "fastmri: bad mask": ([*MRI, "--data", "fastmri:{d[fm_one]}?mask=zigzag"], "mask must be one of"),
    "fastmri: accel 0": ([*MRI, "--data", "fastmri:{d[fm_one]}?accel=0"], "accel must be"),
    "fastmri: classification ckpt": ([*EVAL, "--data", "fastmri:{d[fm_sizes]}?size=16"], "reconstruction"),
    # phantom, digits, synthetic
    "phantom: size 4": ([*MRI, "--data", "phantom:size=4"], "at least 8"),
    "phantom: bad mask": ([*MRI, "--data", "phantom:mask=star"], "mask must be one of"),
    "phantom: center": ([*MRI, "--data", "phantom:center=2"], "center must be"),
    "phantom: unknown option": ([*MRI, "--data", "phantom:colour=3"], "bad phantom option"),
    "phantom: classification ckpt": ([*EVAL, "--data", "phantom:n=2,val=2,size=16"], "reconstruction"),
    "phantom: classifier model": ([*TRAIN, "--data", "phantom:n=2,val=2,size=16"], "does classification"),
    "digits: argument": ([*TRAIN, "--data", "digits:big"], "takes no argument"),
    "digits: bad aug": ([*TRAIN, "--data", "digits?aug=flip"], "bad digits option"),
    "digits: class count": ([*EVAL, "--data", "digits"], "10 classes"),
    "synthetic: not a number": ([*TRAIN, "--data", "synthetic:n=many"], "must be an integer"),
    "synthetic: zero": ([*TRAIN, "--data", "synthetic:n=0"], "must be positive"),
    "synthetic: unknown key": ([*TRAIN, "--data", "synthetic:images=5"], "bad synthetic option"),
}
CASES |= {  # -o: a folder, the input, inside a file; and checkpoints that are folders
    "train -o folder": ([*TRAIN[:-2], "--data", SYNTH, "-o", "{tmp}"], "is a folder"),
    "prune -o folder": (["prune", "{ckpt}", "--ratio", "0.5", "-o", "{tmp}"], "is a folder"),
    "finetune -o folder": ([*FT[:-2], "--data", SYNTH, "-o", "{tmp}"], "is a folder"),
    "import -o folder": (["import", "{ckpt}", "--model", "resnet_tiny", "-o", "{tmp}"], "is a folder"),
    "analyze -o folder": (["analyze", "{ckpt}", "-o", "{tmp}"], "is a folder"),
    "analyze --plot folder": (["analyze", "{ckpt}", "--method", "similarity", "--data", SYNTH, "--plot", "{tmp}"],
                              "is a folder"),
    "prune -o input": (["prune", "{ckpt}", "--ratio", "0.5", "-o", "{ckpt}"], "is the input"),
    "finetune -o input": ([*FT[:-2], "--data", SYNTH, "-o", "{ckpt}"], "is the input"),
    "finetune -o teacher": ([*FT[:-2], "--data", SYNTH, "--teacher", "{d[copy]}", "-o", "{d[copy]}"],
                            "is the input"),
    "train --init -o input": (["train", "--init", "{ckpt}", "--data", SYNTH, "-o", "{ckpt}"], "is the input"),
    "analyze -o input": (["analyze", "{ckpt}", "-o", "{ckpt}"], "is the input"),
    "import -o input": (["import", "{d[copy]}", "--model", "resnet_tiny", "-o", "{d[copy]}"], "is the input"),
    "prune -o inside a file": (["prune", "{ckpt}", "--ratio", "0.5", "-o", "{d[a_file]}/o.safetensors"],
                               "not a folder"),
    "evaluate a folder": (["evaluate", "{tmp}", "--data", SYNTH], "is a folder, not a checkpoint"),
    "info a folder": (["info", "{tmp}"], "is a folder"),
}
CASES |= {  # multi-process training / repeated augmentation (prunecli/engine/dist.py, prunecli/data/shard.py)
    "repeated-aug on reconstruction data": ([*MRI, "--data", "phantom:n=4,val=2,size=16,coils=2", "--repeated-aug"],
                                            "--repeated-aug is for classification data"),
}

CASES |= {  # every other subcommand's own validation
    "profile batch sizes": (["profile", "{ckpt}", "--batch-sizes", "1,x"], "--batch-sizes"),
    "profile runs 0": (["profile", "{ckpt}", "--runs", "0"], "--runs"),
    "profile missing compare": (["profile", "{ckpt}", "--compare", "{tmp}/nope.safetensors"], "checkpoint not found"),
    "profile truncated compare": (["profile", "{ckpt}", "--compare", "{tmp}/truncated.safetensors"],
                                  "truncated.safetensors: truncated"),
    "profile bad tol": (["profile", "{ckpt}", "--tol", "-1"], "--tol"),
    "profile class mismatch": (["profile", "{ckpt}", "--data", "digits", "--batch-sizes", "1"], "10 classes"),
    "doctor unknown model": (["doctor", "resnet21"], "unknown model"),
    "doctor missing checkpoint": (["doctor", "{tmp}/nope.safetensors"], "not found"),
    "doctor corrupt checkpoint": (["doctor", "{tmp}/garbage.safetensors"], "not a safetensors file"),
    "import no weights": (["import", "--model", "resnet_tiny", *OUT], "give a weights file"),
    "import missing weights": (["import", "{tmp}/nope.pth", "--model", "resnet_tiny", *OUT], "not found"),
    "import not a zip": (["import", "{d[state_dict.pth]}", "--model", "resnet_tiny", *OUT],
                        "state dict: PytorchStreamReader failed reading zip archive: not a ZIP archive"),
    "import a pickle": (["import", "{d[pickle.pth]}", "--model", "resnet_tiny", *OUT], "cannot read"),
    "import unknown model": (["import", "{ckpt}", "--model", "resnet21", *OUT], "unknown model"),
    "analyze unknown method": (["analyze", "{ckpt}", "--method", "l3"], "unknown method"),
    "analyze bad ratios": (["analyze", "{ckpt}", "--method", "sensitivity", "--data", SYNTH, "--ratios", "1.5"],
                           "--ratios"),
    "analyze sensitivity without data": (["analyze", "{ckpt}", "--method", "sensitivity"], "--data"),
    "analyze bad selection": (["analyze", "{ckpt}", "--method", "similarity", "--data", SYNTH,
                               "--selection", "best"], "--selection"),
    "analyze missing compare": (["analyze", "{ckpt}", "--method", "cka", "--data", SYNTH,
                                 "--compare", "{tmp}/nope.safetensors"], "not found"),
    "finetune missing teacher": ([*FT, "--data", SYNTH, "--teacher", "{tmp}/nope.safetensors"], "not found"),
    "finetune bad distill": ([*FT, "--data", SYNTH, "--teacher", "{ckpt}", "--distill", "medium"], "--distill"),
    "finetune no output": (["finetune", "{ckpt}", "--data", SYNTH], "missing -o"),
    "train bad schedule": ([*TRAIN, "--data", SYNTH, "--schedule", "sometimes"], "--schedule"),
    "train bad milestones": ([*TRAIN, "--data", SYNTH, "--schedule", "step", "--milestones", "a,b"], "--milestones"),
    "train bad mu-scale": ([*TRAIN, "--data", SYNTH, "--mu-scale", "layer2"], "--mu-scale"),
    "train mu without proxsgd": ([*TRAIN, "--data", SYNTH, "--mu", "0.1"], "--mu needs"),
    "train no model": (["train", "--data", SYNTH, *OUT], "missing --model"),
    "evaluate bad split": ([*EVAL, "--data", SYNTH, "--split", "test2"], "unknown split"),
    "evaluate bad crop": ([*EVAL, "--data", SYNTH, "--crop-pct", "2"], "--crop-pct"),
    "prune fold without zero-groups": (["prune", "{ckpt}", "--ratio", "0.5", "--fold", "exact-1x1", *OUT], "--fold"),
    "prune ratio and macs": (["prune", "{ckpt}", "--ratio", "0.5", "--target-macs", "0.5x", *OUT], "exactly one"),
    "prune similarity needs data": (["prune", "{ckpt}", "--method", "similarity", "--threshold", "0.9", *OUT],
                                    "--data"),
    "prune sparsity bad": (["prune", "{ckpt}", "--method", "l1-unstructured", "--sparsity", "1.2", *OUT],
                           "--sparsity"),
    "prune bad timeout": (["prune", "{ckpt}", "--ratio", "0.5", "--timeout", "-1", *OUT], "--timeout"),
}
CASES |= {  # timm augmentation/regularisation and holdout=N (issue 13)
    "train bad randaugment section": ([*TRAIN, "--data", SYNTH, "--randaugment", "rand-q9"], "--randaugment"),
    "train randaugment not rand": ([*TRAIN, "--data", SYNTH, "--randaugment", "autoaug"], "not a RandAugment"),
    "train randaugment on tensors": ([*TRAIN, "--data", SYNTH, "--randaugment", "rand-m9"], "per-image data"),
    "train reprob above 1": ([*TRAIN, "--data", SYNTH, "--reprob", "1.5"], "--reprob"),
    "train negative mixup": ([*TRAIN, "--data", SYNTH, "--mixup", "-1"], "--mixup"),
    "train negative cutmix": ([*TRAIN, "--data", SYNTH, "--cutmix", "-0.5"], "--cutmix"),
    "train drop-path 1": ([*TRAIN, "--data", SYNTH, "--drop-path", "1"], "--drop-path"),
    "train dropout without dropout layers": ([*TRAIN, "--data", SYNTH, "--dropout", "0.1"], "no dropout layer"),
    "finetune drop-path on a CIFAR ResNet": ([*FT, "--data", SYNTH, "--drop-path", "0.1"], "only timm models"),
    "cifar10: bad holdout": ([*TRAIN, "--data", "cifar10:{d[c10_shape]}?holdout=abc"], "holdout must be"),
    "imagefolder: holdout too large": ([*TRAIN, "--data", "imagefolder:{d[imf_2cls]}?size=16&holdout=100000"],
                                       "leaves no training images"),
    "ham10000: holdout 0": ([*TRAIN, "--data", "ham10000:{d[ham_bad_image]}?holdout=0"], "holdout must be"),
}
CASES |= {  # speed and averaging: --amp, --grad-accum, --ema, --select, --compile (engine/amp.py, engine/select.py)
    "train bad amp": ([*TRAIN, "--data", SYNTH, "--amp", "fp8"], "--amp"),
    "train fp16 on cpu": ([*TRAIN, "--data", SYNTH, "--amp", "fp16"], "needs a CUDA device"),
    "finetune fp16 on cpu": ([*FT, "--data", SYNTH, "--amp", "fp16"], "needs a CUDA device"),
    "evaluate bad amp": ([*EVAL, "--data", SYNTH, "--amp", "half"], "--amp"),
    "mri bf16": ([*MRI, "--data", "phantom:n=2,val=2,size=16", "--amp", "bf16"], "complex FFTs"),
    "train grad-accum 0": ([*TRAIN, "--data", SYNTH, "--grad-accum", "0"], "--grad-accum"),
    "train grad-accum not dividing": ([*TRAIN, "--data", SYNTH, "--grad-accum", "3"], "must divide --batch-size 64"),
    "finetune grad-accum not dividing": ([*FT, "--data", SYNTH, "--grad-accum", "5"], "must divide"),
    "train ema 1": ([*TRAIN, "--data", SYNTH, "--ema", "1"], "--ema"),
    "finetune ema negative": ([*FT, "--data", SYNTH, "--ema", "-0.5"], "--ema"),
    "train bad select": ([*TRAIN, "--data", SYNTH, "--select", "worst"], "--select"),
    "classification select val_dc": ([*FT, "--data", SYNTH, "--select", "val_dc"], "for reconstruction models"),
    "prune grad-accum not dividing": (["prune", "{ckpt}", "--method", "l1-unstructured", "--sparsity", "0.5",
                                       "--data", SYNTH, "-b", "64", "--grad-accum", "3", "--device", "cpu", *OUT],
                                      "must divide"),
    "prune fp16 on cpu": (["prune", "{ckpt}", "--method", "l1-unstructured", "--sparsity", "0.5", "--data", SYNTH,
                           "--amp", "fp16", "--device", "cpu", *OUT], "needs a CUDA device"),
    "mri select best": ([*MRI, "--data", "phantom:n=2,val=2,size=16", "--select", "best"], "use --select val_dc"),
}
CASES |= {  # an option given to a method that does not take it; closed sets (issue 14 item 3: methods own their options)
    "prune threshold with l1": (["prune", "{ckpt}", "--ratio", "0.5", "--threshold", "0.5", *OUT],
                                "--threshold is for --method similarity|zero-groups"),
    "prune sparsity with taylor": (["prune", "{ckpt}", "--method", "taylor", "--sparsity", "0.5", *OUT],
                                   "--sparsity is for --method l1-unstructured"),
    "prune ratio with l1-unstructured": (["prune", "{ckpt}", "--method", "l1-unstructured", "--ratio", "0.5", *OUT],
                                         "--ratio is for --method isomorphic|l1|l2|random|taylor"),
    "prune samples with isomorphic": (["prune", "{ckpt}", "--method", "isomorphic", "--samples", "8", *OUT],
                                      "--samples is for --method similarity"),
    "prune mixup with l1": (["prune", "{ckpt}", "--ratio", "0.5", "--mixup", "0.2", *OUT],
                            "--mixup is for --method l1-unstructured"),
    "prune importance with l2": (["prune", "{ckpt}", "--method", "l2", "--importance", "l1", *OUT],
                                 "--importance is for --method halp|isomorphic"),
    "prune bad schedule": (["prune", "{ckpt}", "--method", "l1-unstructured", "--schedule", "gradual", *OUT],
                           "--schedule must be oneshot, iterative or layerwise"),
    "prune bad importance": (["prune", "{ckpt}", "--method", "isomorphic", "--importance", "cka", *OUT],
                             "--importance must be taylor, l1, l2 or random"),
    "finetune bad strategy": ([*FT, "--data", SYNTH, "--strategy", "mixed"], "--strategy must be"),
    "train bad loss": ([*TRAIN, "--data", SYNTH, "--loss", "huber"], "--loss must be"),
    "analyze bad cka-modules": (["analyze", "{ckpt}", "--method", "cka", "--data", SYNTH, "--cka-modules", "some"],
                                "--cka-modules must be layers or all"),
}
MRI_FT = ["finetune", "{d[mri_ckpt]}", "--data", "phantom:n=2,val=1,test=1,size=16", "--epochs", "1", "-b", "2",
          "--device", "cpu", *OUT]
CASES |= {  # MBDL protocol (issue 15 items 1, 2, 4, 7): test split, --adapt-on, --tol, combined strategies
    "phantom: negative test": ([*MRI, "--data", "phantom:test=-1"], "test must be an integer"),
    "phantom: evaluate test=0": (["evaluate", "{d[mri_ckpt]}", "--data", "phantom:n=2,val=1,test=0,size=16",
                                  "--split", "test", "--device", "cpu"], "test=0 leaves no test split"),
    "fastmri: bad split": ([*MRI, "--data", "fastmri:{d[fm_one]}?split=90/10"], "split must be TRAIN/VAL/TEST"),
    "fastmri: split not 100": ([*MRI, "--data", "fastmri:{d[fm_one]}?split=90/10/10"], "summing to 100"),
    "fastmri: split no train": ([*MRI, "--data", "fastmri:{d[fm_one]}?split=0/50/50"], "TRAIN > 0"),
    "fastmri: evaluate missing test": (["evaluate", "{d[mri_ckpt]}", "--data", "fastmri:{d[fm_one]}?size=16",
                                        "--split", "test", "--device", "cpu"], "holds one file"),
    "finetune bad adapt-on": ([*MRI_FT, "--adapt-on", "val"], "--adapt-on must be"),
    "finetune adapt-on test supervised": ([*MRI_FT, "--adapt-on", "test"], "not --strategy supervised"),
    "finetune adapt-on test supervised+distill": ([*MRI_FT, "--adapt-on", "test", "--strategy", "supervised+distill",
                                                   "--teacher", "{d[mri_ckpt]}"], "not --strategy supervised+distill"),
    "finetune adapt-on test classifier": ([*FT, "--data", SYNTH, "--adapt-on", "test"], "reconstruction models"),
    "finetune supervised+distill no teacher": ([*MRI_FT, "--strategy", "supervised+distill"], "need --teacher"),
    "finetune testdc+distill no teacher": ([*MRI_FT, "--strategy", "testdc+distill"], "need --teacher"),
    "finetune selfsup with teacher": ([*MRI_FT, "--strategy", "selfsup", "--teacher", "{d[mri_ckpt]}"],
                                      "only they take one"),
    "finetune tol 0": ([*MRI_FT, "--tol", "0"], "--tol"),
    "finetune tol negative": ([*MRI_FT, "--tol", "-1e-3"], "--tol"),
    "finetune tol classifier": ([*FT, "--data", SYNTH, "--tol", "1e-3"], "has no solver"),
    "train tol varnet": (["train", "--model", "varnet-tiny", "--data", "phantom:n=2,val=1,size=16", "--tol", "1e-3",
                          "--epochs", "1", "-b", "2", "--device", "cpu", *OUT], "has no solver"),
}
CASES |= {  # MRI ops (issue 15 items 5, 6, 8): ESPIRiT maps, the parameter-free zero-filled model, profile --stat
    "train zero-filled epochs": (["train", "--model", "zero-filled", "--data", "phantom:n=2,val=2,size=16",
                                  "--epochs", "1", "-o", "{tmp}/o.safetensors"], "no parameters"),
    "profile bad stat": (["profile", "{ckpt}", "--stat", "mode"], "--stat"),
    "fastmri: bad maps": ([*MRI, "--data", "fastmri:{d[fm_one]}?maps=sense"], "maps must be one of auto, acs, file, espirit"),
}
CASES |= {  # issue 17: report, evaluate/profile -o sidecars, --tensorboard
    "report missing folder": (["report", "{tmp}/no/such/runs"], "no such folder"),
    "report bad x": (["report", "{tmp}", "--x", "flops"], "--x must be macs or latency"),
    "report bad metric": (["report", "{tmp}", "--metric", "top3"], "--metric must be"),
    "report missing paper": (["report", "{tmp}", "--paper", "{tmp}/paper.json"], "no such file"),
    "report paper not json": (["report", "{tmp}", "--paper", "{tmp}/garbage.safetensors"], "not JSON"),
    "report md in missing folder": (["report", "{tmp}", "--md", "{tmp}/no/such/r.md"], "output folder does not exist"),
    "evaluate -o a checkpoint name": (["evaluate", "{ckpt}", "--data", SYNTH, "-o", "{tmp}/o.safetensors"],
                                      "give a JSON file such as <stem>.eval.json"),
    "profile -o stdout": (["profile", "{ckpt}", "-o", "-"], "give a JSON file such as <stem>.profile.json"),
    "train tensorboard is a file": ([*TRAIN, "--data", SYNTH, "--tensorboard", "{tmp}/garbage.safetensors"],
                                    "--tensorboard"),
}
CASES |= {  # export (issue 16): `prunecli export`'s own options (prunecli/export/run.py)
    "export bad format": (["export", "{ckpt}", "--format", "tflite", "-o", "{tmp}/o.onnx"],
                          "--format must be onnx or pt2"),
    "export opset with pt2": (["export", "{ckpt}", "--format", "pt2", "--opset", "18", "-o", "{tmp}/o.pt2"],
                              "--opset applies to --format onnx only"),
    "export opset too old": (["export", "{ckpt}", "--opset", "11", "-o", "{tmp}/o.onnx"], "--opset must be between 18"),
    "export batch size 0": (["export", "{ckpt}", "--batch-size", "0", "-o", "{tmp}/o.onnx"], "--batch-size"),
    "export negative atol": (["export", "{ckpt}", "--atol", "-1", "-o", "{tmp}/o.onnx"], "--atol and --rtol"),
    "export to stdout": (["export", "{ckpt}", "-o", "-"], "-o - is not supported"),
    "export over its input": (["export", "{ckpt}", "--format", "pt2", "-o", "{ckpt}"], "is the input"),
    "export missing folder": (["export", "{ckpt}", "-o", "{tmp}/no/such/o.onnx"], "output folder does not exist"),
    "export missing checkpoint": (["export", "{tmp}/nope.safetensors", "-o", "{tmp}/o.onnx"], "checkpoint not found"),
    "profile bad backend": (["profile", "{ckpt}", "--backend", "tensorrt"], "--backend must be torch or onnxruntime"),
}
CLICK_CASES = {  # Typer/click's own usage errors: exit 2 and a usage box, no traceback
    "ls unknown table": (["ls", "datasets"], "No such command"),
    "unknown command": (["shrink", "{ckpt}"], "No such command"),
    "bad int": (["evaluate", "{ckpt}", "--batch-size", "many"], "Invalid value"),
    "batch size 0": (["evaluate", "{ckpt}", "--batch-size", "0"], "Invalid value"),
    "doctor negative timeout": (["doctor", "resnet_tiny", "--timeout", "-1"], "Invalid value"),
}


def _args(args, tmp_path, ckpt, data) -> list[str]:
    return [a.format(tmp=tmp_path, ckpt=ckpt, d=data) for a in args]


def _check(code: int, out: str, err: str, needle: str, tmp_path) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "o.safetensors").exists()
    assert out == ""


CASES |= {  # latency-aware pruning (issue 16): --target-latency, --round-to auto, halp, profile --latency
    "prune target latency 0x": (["prune", "{ckpt}", "--target-latency", "0x", *OUT], "--target-latency 0x"),
    "prune target latency 1.5x": (["prune", "{ckpt}", "--target-latency", "1.5x", *OUT], "in (0, 1)"),
    "prune target latency syntax": (["prune", "{ckpt}", "--target-latency", "fast", *OUT], "milliseconds (12ms)"),
    "prune round-to foo": (["prune", "{ckpt}", "--ratio", "0.5", "--round-to", "foo", *OUT],
                           "--round-to must be a positive integer or auto"),
    "prune halp without budget": (["prune", "{ckpt}", "--method", "halp", *OUT], "needs --target-latency"),
    "prune halp with ratio": (["prune", "{ckpt}", "--method", "halp", "--ratio", "0.5", *OUT],
                              "--ratio is for --method isomorphic|l1|l2|random|taylor"),
    "prune ratio and latency": (["prune", "{ckpt}", "--ratio", "0.5", "--target-latency", "0.5x", *OUT],
                                "exactly one"),
    "prune latency above model": (["prune", "{ckpt}", "--target-latency", "100000ms", "--latency-batch", "1",
                                   "--device", "cpu", *OUT], "below the model's measured"),
    "profile latency without per-layer": (["profile", "{ckpt}", "--latency"], "--per-layer"),
    "profile bad allocator": (["profile", "{ckpt}", "--allocator", "jemalloc"], "--allocator"),
}


def test_at_least_80_cases_cover_every_subcommand_and_family():
    assert len(CASES) >= 80
    commands = {args[0] for args, _ in CASES.values()} | {args[0] for args, _ in CLICK_CASES.values()}
    assert commands >= {"train", "analyze", "prune", "finetune", "evaluate", "profile", "doctor", "import",
                        "info", "ls", "report", "export"}
    specs = " ".join(a for args, _ in CASES.values() for a in args)
    for family in ("digits", "synthetic", "cifar10:", "cifar100:", "imagefolder:", "ham10000:", "fastmri:",
                   "phantom"):
        assert family in specs, family


@pytest.mark.parametrize("case", list(CASES))
def test_user_error_is_one_line_exit_2(case, tmp_path, tiny_ckpt, bad_data, capsys):
    """In-process through `main()` (the same code path as the console script, but fast)."""
    _bad_files(tmp_path, tiny_ckpt.read_bytes())
    args, needle = CASES[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    code = run_main(*_args(args, tmp_path, tiny_ckpt, bad_data))
    captured = capsys.readouterr()
    _check(code, captured.out, captured.err, needle, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temp file left


@pytest.mark.parametrize("case", list(CLICK_CASES))
def test_usage_error_is_clean(case, tmp_path, tiny_ckpt, bad_data, capsys):
    args, needle = CLICK_CASES[case]
    code = run_main(*_args(args, tmp_path, tiny_ckpt, bad_data))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and needle in err, err


@pytest.mark.parametrize("case", ["truncated", pytest.param("unknown model", marks=pytest.mark.slow),
                                  pytest.param("class mismatch", marks=pytest.mark.slow),
                                  "imagefolder: evaluate, truncated"])
def test_user_error_in_real_process(case, tmp_path, tiny_ckpt, bad_data):
    _bad_files(tmp_path, tiny_ckpt.read_bytes())
    args, needle = CASES[case]
    res = run_proc(*_args(args, tmp_path, tiny_ckpt, bad_data))
    _check(res.returncode, res.stdout.decode(), res.stderr.decode(), needle, tmp_path)


def test_debug_shows_traceback(tmp_path):
    res = run_proc("--debug", "evaluate", tmp_path / "nope.safetensors")
    assert res.returncode != 0 and b"Traceback" in res.stderr


def test_failed_prune_leaves_existing_output_intact(tmp_path, tiny_ckpt):
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"previous result")
    res = run_proc("prune", tiny_ckpt, "--target-macs", "5G", "-o", out)
    assert res.returncode == 2
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.safetensors"]  # no temp files left behind


def test_pretrained_without_hub_fails_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    code = run_main("import", "--model", "timm:resnet18", "--pretrained", "-o", tmp_path / "o.safetensors")
    captured = capsys.readouterr()
    _check(code, captured.out, captured.err, "unreachable", tmp_path)


def test_torch_pruning_failure_is_one_line_naming_the_group(tiny_ckpt, tmp_path, monkeypatch, capsys):
    """An exception inside Torch-Pruning (timm FastViT raised IndexError in its importance) is one
    `error:` line naming the group's root layer and the --ignore that leaves it, exit 2, no files."""
    import torch_pruning as tp

    original = tp.importance.GroupMagnitudeImportance.__call__

    def failing(self, group, **kwargs):
        if group[0].dep.target.module is self._victim:
            raise IndexError("index 7 is out of bounds for dimension 0 with size 4")
        return original(self, group, **kwargs)

    from prunecli.io.checkpoint import load

    victim_name = "layer1.0.conv1"
    monkeypatch.setattr(tp.importance.GroupMagnitudeImportance, "__call__", failing)
    monkeypatch.setattr(tp.importance.GroupMagnitudeImportance, "_victim", None, raising=False)
    import prunecli.pruning.structured as structured

    real_prune_at = structured.prune_at

    def prune_at(model, *args, **kwargs):  # point the failure at one conv of the model being pruned
        tp.importance.GroupMagnitudeImportance._victim = model.get_submodule(victim_name)
        return real_prune_at(model, *args, **kwargs)

    monkeypatch.setattr(structured, "prune_at", prune_at)
    assert load(tiny_ckpt).model.get_submodule(victim_name) is not None
    code = run_main("prune", tiny_ckpt, "--method", "l1", "--ratio", "0.3", "-o", tmp_path / "p.safetensors")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "IndexError" in lines[0] and f"'{victim_name}'" in lines[0]
    assert "--ignore 'layer1.*.conv1'" in lines[0]
    assert list(tmp_path.iterdir()) == []


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _readonly(folder: Path):
    """Make `folder` read-only: mode 555, or for root (whom modes do not stop) immutable; → undo."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", folder], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: no folder is read-only")
    return lambda: subprocess.run(["chattr", "-i", folder], check=True)


@pytest.fixture
def readonly_dir(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    undo = _readonly(folder)
    yield folder
    undo()


def test_profile_of_a_checkpoint_in_a_readonly_folder_still_reports(tiny_ckpt, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copy(tiny_ckpt, folder / "base.safetensors")
    undo = _readonly(folder)
    try:
        code = run_main("profile", folder / "base.safetensors", "--batch-sizes", "1", "--runs", "1", "--json")
    finally:
        undo()
    captured = capsys.readouterr()
    assert code == 0 and '"macs"' in captured.out, captured.err
    assert "warning: cannot write in folder" in captured.err and "not updated" in captured.err
    assert sorted(p.name for p in folder.iterdir()) == ["base.safetensors"]


READONLY = {
    "train": ["train", "--model", "resnet_tiny", "--data", SYNTH, "--epochs", "1"],
    "prune": ["prune", "{ckpt}", "--ratio", "0.5"],
    "finetune": ["finetune", "{ckpt}", "--data", SYNTH, "--epochs", "1"],
    "import": ["import", "{ckpt}", "--model", "resnet_tiny"],
    "analyze": ["analyze", "{ckpt}"],
}


@pytest.mark.parametrize("command", list(READONLY))
def test_output_in_a_readonly_folder(command, readonly_dir, tiny_ckpt, tmp_path, capsys):
    args = [a.format(ckpt=tiny_ckpt) for a in READONLY[command]]
    code = run_main(*args, "-o", readonly_dir / "o.safetensors")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    (line,) = _error_lines(err)
    assert "cannot write in folder" in line and str(readonly_dir) in line
    assert list(readonly_dir.iterdir()) == []
