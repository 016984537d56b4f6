#!/usr/bin/env cwl-runner
# One step that sleeps (300 seconds unless told otherwise): something to cancel.
cwlVersion: v1.2
class: Workflow
doc: A workflow that sleeps for a while.

inputs:
  seconds:
    type: int
    default: 300
outputs: []

steps:
  nap:
    run:
      class: CommandLineTool
      baseCommand: sleep
      inputs:
        seconds:
          type: int
          inputBinding:
            position: 1
      outputs: []
    in:
      seconds: seconds
    out: []
