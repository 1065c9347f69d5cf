"""One module per `bnn-shift` command: `add(subparsers)` declares it, `run(args)` runs it."""
