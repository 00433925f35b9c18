from lifeline_dispatch.cli import main

main()
