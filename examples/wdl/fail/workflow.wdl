version 1.0

# A task that fails with exit code 3.
workflow fail {
  call broken
  output {
    String said = broken.said
  }
}

task broken {
  command <<<
    echo "about to fail" >&2
    exit 3
  >>>
  output {
    String said = read_string(stdout())
  }
}
