"""``python -m ffneuro.train.pipeline JOB``: one local stage process (see ``launch``)."""

import sys

from ffneuro.train.pipeline.launch import leave, stage_main

leave(stage_main(sys.argv[1]))
