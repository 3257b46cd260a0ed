from mdtool.cli import main

main()
