#!/usr/bin/env cwl-runner
cwlVersion: v1.2
class: CommandLineTool
doc: Upper-case a text file; report on stderr what was done.

baseCommand: [sh, -c]
arguments:
  - |
    echo "shouting `wc -l < "$0"` lines" >&2
    tr '[:lower:]' '[:upper:]' < "$0"
inputs:
  text:
    type: File
    inputBinding:
      position: 1
stdout: shouted.txt
outputs:
  shouted:
    type: stdout
