version 1.1

# A task that sleeps, for cancelling.
workflow nap {
  input {
    Int seconds = 60
  }
  call sleep_for { input: seconds = seconds }
}

task sleep_for {
  input {
    Int seconds
  }
  command <<<
    sleep ~{seconds}
  >>>
}
