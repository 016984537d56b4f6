version 1.1

# Counts the words of each line of a text in parallel (a scatter), then adds them up.
workflow wordcount {
  input {
    File text
  }
  call split_lines { input: text = text }
  scatter (line in split_lines.lines) {
    call count { input: line = line }
  }
  call total { input: counts = count.words }
  output {
    Array[Int] per_line = count.words
    Int words = total.sum
    File report = total.report
  }
}

task split_lines {
  input {
    File text
  }
  command <<<
    grep -v '^[[:space:]]*$' '~{text}' > lines.txt
  >>>
  output {
    Array[String] lines = read_lines("lines.txt")
  }
}

task count {
  input {
    String line
  }
  command <<<
    echo '~{line}' | wc -w
  >>>
  output {
    Int words = read_int(stdout())
  }
}

task total {
  input {
    Array[Int] counts
  }
  command <<<
    echo $(( ~{sep(" + ", counts)} )) | tee total.txt
  >>>
  output {
    Int sum = read_int("total.txt")
    File report = "total.txt"
  }
}
