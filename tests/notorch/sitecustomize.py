"""Makes this interpreter look like one without torch: put this folder on PYTHONPATH and
`import torch` (or transformers, numpy, ...: everything the notorch environment does not install)
raises ImportError. Subprocesses inherit PYTHONPATH, so a CLI run started by a test is blocked too.
"""
import notorch_block

notorch_block.install()
