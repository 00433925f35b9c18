from lifeline_resources.cli import main

main()
