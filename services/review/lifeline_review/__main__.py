from lifeline_review.cli import main

main()
