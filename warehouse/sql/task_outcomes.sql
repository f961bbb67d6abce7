-- The outcomes of one task's earlier warnings.
select * from outcomes where task = ?
