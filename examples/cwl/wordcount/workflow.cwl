#!/usr/bin/env cwl-runner
# Two steps whose tools live in tools/: shout upper-cases a text file (and says so on
# stderr), count writes the line and word counts of the result to counts.txt.
cwlVersion: v1.2
class: Workflow
doc: Upper-case a text file, then count its lines and words.

inputs:
  text: File

outputs:
  shouted:
    type: File
    outputSource: shout/shouted
  counts:
    type: File
    outputSource: count/counts

steps:
  shout:
    run: tools/shout.cwl
    in:
      text: text
    out: [shouted]
  count:
    run: tools/count.cwl
    in:
      text: shout/shouted
    out: [counts]
