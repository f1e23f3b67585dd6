import DecosCLI

await DecosCLI.main()
