cwlVersion: v1.2
class: CommandLineTool
doc: Lists the root folder of the container image it runs in (a DockerRequirement).
requirements:
  DockerRequirement:
    dockerPull: spindle-test/busybox:1
baseCommand: [ls, /]
stdout: root.txt
inputs: []
outputs:
  root:
    type: File
    outputBinding:
      glob: root.txt
