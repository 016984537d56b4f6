version 1.1

# A task that runs in a container image (runtime.docker) and lists its root folder.
workflow inside {
  input {
    String image = "spindle-test/busybox:1"
  }
  call list_root { input: image = image }
  output {
    Array[String] root = list_root.names
  }
}

task list_root {
  input {
    String image
  }
  command <<<
    ls /
  >>>
  output {
    Array[String] names = read_lines(stdout())
  }
  runtime {
    docker: image
  }
}
