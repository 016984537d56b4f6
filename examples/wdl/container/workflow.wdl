version 1.1

# A task that runs in a container image (runtime.docker) and lists its root folder and its
# network interfaces (after sleeping `seconds`, to cancel it while it runs).
workflow inside {
  input {
    String image = "spindle-test/busybox:1"
    Int seconds = 0
  }
  call list_root { input: image = image, seconds = seconds }
  output {
    Array[String] root = list_root.names
    Array[String] interfaces = list_root.interfaces
  }
}

task list_root {
  input {
    String image
    Int seconds
  }
  command <<<
    sleep ~{seconds}
    ls /sys/class/net > interfaces.txt
    ls /
  >>>
  output {
    Array[String] names = read_lines(stdout())
    Array[String] interfaces = read_lines("interfaces.txt")
  }
  runtime {
    docker: image
  }
}
