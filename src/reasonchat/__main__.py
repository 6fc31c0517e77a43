from reasonchat.cli import main

raise SystemExit(main())
