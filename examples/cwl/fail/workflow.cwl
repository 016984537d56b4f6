#!/usr/bin/env cwl-runner
# One step whose tool says why on stderr and exits 3: the run must end in EXECUTOR_ERROR.
cwlVersion: v1.2
class: Workflow
doc: A workflow whose only step fails.

inputs: []
outputs: []

steps:
  break:
    run:
      class: CommandLineTool
      baseCommand: [sh, -c, 'echo "about to fail" >&2; exit 3']
      inputs: []
      outputs: []
    in: []
    out: []
