"""``podium board``: a read-only web page per study that follows its best model live.

One shared Redis follower (:mod:`podium.board.feed`) fans best-model updates out to every open page over
Server-Sent Events; the candidates come from MLflow through the same selection as ``podium select``, cached
and refreshed only when an update arrives (:mod:`podium.board.selections`); the pages draw their charts in the
browser from the JSON endpoints (:mod:`podium.board.app`, ``static/``)."""
