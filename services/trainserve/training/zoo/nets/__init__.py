"""The torch modules of the zoo's architectures, one module per architecture.

These import torch; the architecture files one level up (spec defaults and checks) import them
only inside `build`, so that validating a spec never imports torch.
"""
