#!/usr/bin/env cwl-runner
cwlVersion: v1.2
class: CommandLineTool
doc: Count the lines and words of a text file.

baseCommand: [wc, -l, -w]
inputs:
  text: File
stdin: $(inputs.text.path)
stdout: counts.txt
outputs:
  counts:
    type: stdout
