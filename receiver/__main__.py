from receiver.cli import main

raise SystemExit(main())
