import os, pathlib, sys
ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('BABYVLM_THREADS', '2')
