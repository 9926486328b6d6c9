from prunesearch.cli.app import main

main()
