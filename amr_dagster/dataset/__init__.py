"""The end of the graph: choosing one verified response per instruction, and the export."""
